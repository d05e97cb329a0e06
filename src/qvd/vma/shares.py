"""The session's shared folders, seen from the VMA: the client's folders mounted on
``~/Redirected/<name>`` by ``qvd-vma-slave`` (sshfs over the slave channel).

A share lives as long as its slave channel, and the channel ends when the client goes
away: so suspending the session ends every share (the client shares them again after
it resumes, as it does at every connect), and stopping it too. On ``suspended`` and
``stopped`` this device unmounts whatever FUSE mount is still below ``~/Redirected``
(a share whose sshfs died without unmounting) as the session's user, with
``fusermount3 -u -z`` (lazy: an application holding a file open does not keep it).
Standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path

from qvd.vma.devices import DeviceContext

__all__ = ["SharesDevice", "fuse_mounts_below"]

log = logging.getLogger(__name__)
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def fuse_mounts_below(mountinfo: str, directory: str) -> list[str]:
    """The mount points of FUSE mounts strictly below ``directory`` (deepest first)."""
    prefix = directory.rstrip("/") + "/"
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        fstype = line.split(" - ", 1)[1].split(" ", 1)[0]
        point = _unescape(fields[4])
        if (fstype == "fuse" or fstype.startswith("fuse.")) and point.startswith(prefix):
            found.append(point)
    return sorted(found, key=len, reverse=True)


class SharesDevice:
    name = "shares"

    def __init__(self, mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
        self._mountinfo = mountinfo

    def session_env(self, ctx: DeviceContext) -> dict[str, str]:
        # qvd-share-to-client (a desktop folder opened on the client) reads the key
        # there; always given (a resume may open the slave channel), the file exists
        # only while the channel is open
        return {"QVD_SLAVE_KEY_FILE": str(ctx.run_dir / "slave-key")}

    def connected(self, ctx: DeviceContext) -> None:
        pass  # the client mounts its shares itself, through the slave channel

    def suspended(self, ctx: DeviceContext) -> None:
        self._unmount_all(ctx)

    def stopped(self, ctx: DeviceContext) -> None:
        self._unmount_all(ctx)

    def _unmount_all(self, ctx: DeviceContext) -> None:
        if not ctx.plan.slave:
            return
        shares = os.path.join(ctx.user.pw_dir, "Redirected")
        for point in fuse_mounts_below(self._mountinfo.read_text(), shares):
            done = subprocess.run(
                ["fusermount3", "-u", "-z", "--", point],
                user=ctx.user.pw_uid, group=ctx.user.pw_gid, extra_groups=[],
                env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                check=False, timeout=20,
            )  # fmt: skip
            if done.returncode != 0:
                log.warning("share %r: unmount failed: %s", point, done.stderr.strip())
            else:
                log.info("share %r unmounted", point)
