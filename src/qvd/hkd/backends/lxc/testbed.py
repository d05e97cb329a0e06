"""One desktop container started exactly as a node starts it (tests and benchmarks).

The VMA tests and ``bench/vma_session.py`` used to write an LXC configuration of their
own, which drifted from the HKD's (privileged, another MAC formula, other pty and tmpfs
sizes). This harness is the LXC backend itself (``LxcBackend.prepare``/``start``/
``kill``/``cleanup``, so :func:`render_config`'s configuration: unprivileged id map,
seccomp, AppArmor, the HKD's limits, ``mac_for``'s MAC, the bounded upper and the
VMA secret placed the same way) on a storage root and LXC path of the caller's
(``workdir``), plugged into a test bridge of the caller's. Only the orchestration
around it (which bridge, which address, reading files inside) is the harness's.

``close()`` kills the container and cleans up after it (its fresh upper, mount, veth,
cgroups and LXC directory go); the unpacked base stays in ``workdir`` for the next
container of the same image, as on a node.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Protocol

from qvd.config import Config
from qvd.hkd.addressing import host_device, mac_for
from qvd.hkd.backends.base import NetworkSpec, VmSpec
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.backends.lxc.layout import container_name

__all__ = ["BridgeLike", "Container", "HarnessError"]

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_DI_ID = 70000  # the harness's DI id: one unpacked base per image file name
_FIRST_VM_ID, _VM_IDS = 70000, 20000  # far from the ids of test databases (10000 on)
_MAC_PREFIX = "54:52:00"  # vm.network.mac.prefix's default


class HarnessError(Exception):
    """The harness could not set something up."""


class BridgeLike(Protocol):
    """A bridge the caller made (``qvd.di.testbed.Bridge``): its name and the address
    of host number ``n`` on its /24."""

    name: str

    def address(self, host: int) -> str: ...


def _check_route(address: str, device: str) -> None:
    """Refuse to talk to ``address`` unless the host routes it through ``device``."""
    out = subprocess.run(
        ["ip", "-o", "route", "get", address], capture_output=True, text=True, env=_ENV,
        check=False,
    ).stdout  # fmt: skip
    if f" dev {device} " not in f" {out} ":
        raise HarnessError(f"{address} is not routed via {device}: {out.strip()}")


class Container:
    """One container of ``image`` (a DI file), with the VMA as its init, as the HKD runs
    it; ``host`` is its address's host number on ``bridge``."""

    def __init__(
        self,
        *,
        image: Path,
        workdir: Path,
        bridge: BridgeLike,
        host: int,
        secret: str,
        memory_mib: int = 512,
        vcpus: int = 2,
    ) -> None:
        self.bridge = bridge
        self.address = bridge.address(host)
        self.secret = secret
        self.vm_id = _FIRST_VM_ID + secrets.randbelow(_VM_IDS)
        self.name = container_name(self.vm_id)
        workdir = workdir.resolve()
        self.backend = LxcBackend(
            Config().with_overrides(
                {
                    "path.storage.root": str(workdir / "storage"),
                    "path.run": str(workdir / "run"),
                    "path.run.lxc": str(workdir / "lxc"),
                },
                source="testbed",
            )
        )
        self.lxcpath = self.backend.layout.lxcpath
        self.spec = VmSpec(
            vm_id=self.vm_id,
            name=f"desk{host}",
            di_id=_DI_ID,
            image=image.resolve(),
            memory_mib=memory_mib,
            vcpus=vcpus,
            cpu_weight=100,
            network=NetworkSpec(
                bridge=bridge.name,
                address=self.address,
                prefix=24,
                mac=mac_for(self.address, _MAC_PREFIX),
                host_device=host_device("qvd", self.vm_id),
            ),
            vma_secret=secret,
        )
        self.started_at: float | None = None

    @property
    def config_text(self) -> str:
        """The LXC configuration the backend wrote (after ``prepare``)."""
        return (self.backend.layout.container_dir(self.vm_id) / "config").read_text()

    def prepare(self) -> None:
        """The base (unpacked once per image), a fresh upper with the secret, the LXC
        configuration; not started."""
        self.backend.prepare(self.spec)

    def start(self) -> None:
        _check_route(self.address, self.bridge.name)
        self.started_at = time.monotonic()
        self.backend.start(self.spec)

    def state(self) -> str:
        return self.backend.lxc.state(self.name)

    def wait_stopped(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.backend.is_alive(self.vm_id):
                return True
            time.sleep(0.05)
        return False

    def attach(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside (lxc-attach, as the container's root), capturing it."""
        return subprocess.run(
            ["lxc-attach", "-P", str(self.lxcpath), "-n", self.name, "--", *argv],
            capture_output=True, text=True, env=_ENV, check=False,
        )  # fmt: skip

    def log_text(self, path: str) -> str:
        """A file of the running container (read from inside)."""
        return self.attach("cat", path).stdout

    def close(self) -> None:
        if self.backend.is_alive(self.vm_id):
            self.backend.kill(self.vm_id)
            self.wait_stopped(30)
        self.backend.cleanup(self.vm_id)
        self.backend.close()
