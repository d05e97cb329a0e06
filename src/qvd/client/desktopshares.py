"""Desktop folders opened on the client (the reverse of shared folders).

Settings: ``client.share.from_desktop.enable`` (default 0: a desktop cannot mount
anything on this machine unless the user allows it) and
``client.share.from_desktop.path`` (where, default ``~/QVD``; each folder on
``<path>/<name>``).

``open`` sets nxproxy's ``NX_SLAVE_CMD`` to a launcher of ``qvd.client.slaveserver``
(written in a private temporary folder: nxproxy runs the command without arguments)
with the slave key and the settings in nxproxy's environment (never an argv). With the
setting off the server still answers, with a 403 and the reason, so the desktop user
learns why. ``close`` unmounts whatever desktop folder is still mounted below the path
and removes the launcher.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import qvd
from qvd.client import settings
from qvd.client.devices import ClientSession
from qvd.client.slaveserver import (
    ENV_BASE,
    ENV_ENABLED,
    ENV_KEY,
    ENV_SLOTS,
    base_dir,
)
from qvd.vma.shares import fuse_mounts_below
from qvd.vma.slave import unmount

__all__ = ["DesktopSharesDevice", "launcher_script"]


def launcher_script(python: str, package_root: str) -> str:
    """The ``NX_SLAVE_CMD`` script: this interpreter, this copy of qvd."""
    return (
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(package_root)}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f"exec {shlex.quote(python)} -m qvd.client.slaveserver\n"
    )


class DesktopSharesDevice:
    name = "desktop-shares"

    def __init__(self, conf: settings.ClientSettings) -> None:
        self.enabled = conf.flag("client.share.from_desktop.enable") is True
        self.base = base_dir(conf.get("client.share.from_desktop.path"))
        self._launcher_dir: str | None = None

    def params(self) -> dict[str, str]:
        return {}

    def open(self, session: ClientSession) -> list[str]:
        if not session.slave_key:
            return []
        self._launcher_dir = tempfile.mkdtemp(prefix="qvd-client-slave-")  # 0700
        launcher = Path(self._launcher_dir) / "slave-server"
        package_root = str(Path(qvd.__file__).resolve().parent.parent)
        launcher.write_text(launcher_script(sys.executable, package_root), encoding="utf-8")
        launcher.chmod(0o700)
        session.env.update(
            {
                "NX_SLAVE_CMD": str(launcher),
                ENV_KEY: session.slave_key,
                ENV_ENABLED: "1" if self.enabled else "0",
                ENV_BASE: self.base,
                ENV_SLOTS: self._launcher_dir,  # bounds the servers running at once
            }
        )
        if self.enabled:
            print(f"desktop folders open on {self.base}/<name> (qvd-share-to-client)",
                  file=sys.stderr, flush=True)  # fmt: skip
        return []

    def attached(self, session: ClientSession) -> None:
        pass  # the desktop asks, over VM→client slave connections

    def close(self) -> None:
        if self.enabled:
            with contextlib.suppress(OSError):
                with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
                    left = fuse_mounts_below(fh.read(), self.base)
                for point in left:
                    unmount(point)
                    with contextlib.suppress(OSError):
                        os.rmdir(point)
        if self._launcher_dir is not None:
            shutil.rmtree(self._launcher_dir, ignore_errors=True)
            self._launcher_dir = None
