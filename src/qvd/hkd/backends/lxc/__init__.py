"""The LXC backend: one privileged container per VM, from Debian's ``lxc`` tools.

Root: an overlay of the DI's unpacked base (shared by every VM of that DI) and the
VM's own upper layer, mounted by LXC inside the container. Init: the VMA. Network: a
veth on the node's bridge with the VM's fixed address and MAC. Limits: cgroup v1
memory, cpu.shares and pids.max, read back after start.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from pathlib import Path

from qvd.config import Config
from qvd.hkd.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    TerminalBackendError,
    VmSpec,
)
from qvd.hkd.backends.lxc.config import render_config
from qvd.hkd.backends.lxc.control import Lxc, run
from qvd.hkd.backends.lxc.layout import Layout, container_name, vm_id_of
from qvd.imagefile import ImageRejected, unpack_checked
from qvd.vma.homefiles import HomeError, write_file_below

__all__ = ["LxcBackend"]

_ALIVE = {"RUNNING", "STARTING", "STOPPING", "FREEZING", "FROZEN", "THAWED", "ABORTING"}
SECRET_PATH = Path("etc/qvd/vma.secret")


class LxcBackend(Backend):
    name = "lxc"
    capabilities = Capabilities(
        shares_base_image=True, persistent_home=True, memory_limit=True,
        needs_vma_poweroff=False,
    )  # fmt: skip

    def __init__(self, config: Config) -> None:
        self.layout = Layout(
            images=config.get_path("path.storage.images"),
            basefs=config.get_path("path.storage.basefs"),
            overlayfs=config.get_path("path.storage.overlayfs"),
            homefs=config.get_path("path.storage.homefs"),
            lxcpath=config.get_path("path.run.lxc"),
        )
        self.device_prefix = config.get("internal.vm.network.device.prefix")
        self.lxc = Lxc(self.layout.lxcpath, config.get_path("path.cgroup"))

    # ---- storage ------------------------------------------------------------------------
    def ensure_base(self, di_id: int, image: Path) -> Path:
        """The DI's unpacked base, unpacked now if this node has not done it yet."""
        base = self.layout.base(di_id, image)
        if base.is_dir():
            return base
        if not image.is_file():
            raise TerminalBackendError(f"disk image file {image} is missing on this node")
        self.layout.basefs.mkdir(parents=True, exist_ok=True)
        with open(self.layout.base_lock(di_id), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one unpack per DI, others wait and reuse
            if base.is_dir():
                return base
            tmp = self.layout.basefs / f"untar-{os.getpid()}-{secrets.token_hex(4)}"
            tmp.mkdir()
            try:
                unpack_checked(image, tmp)
            except ImageRejected as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise TerminalBackendError(f"disk image {image.name} refused: {exc}") from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            tmp.chmod(0o755)
            tmp.rename(base)
        return base

    def prepare(self, spec: VmSpec) -> None:
        base = self.ensure_base(spec.di_id, spec.image)
        layer = self.layout.layer(spec.di_id, spec.vm_id)
        for old in self.layout.layers_of(spec.vm_id):
            if old != layer or not spec.overlay_persistent:
                self._discard(old)
        upper = self.layout.upper(spec.di_id, spec.vm_id)
        upper.mkdir(parents=True, exist_ok=True)
        try:  # a persistent upper is the desktop's root's: never follow its links
            write_file_below(
                str(upper), SECRET_PATH.parent.parts, SECRET_PATH.name,
                (spec.vma_secret + "\n").encode(),
            )  # fmt: skip
        except HomeError as exc:
            raise TerminalBackendError(
                f"VM {spec.vm_id}: cannot place the VMA secret: {exc}"
            ) from None
        home: Path | None = None
        if spec.home_key is not None:
            home = self.layout.home(spec.home_key)
            home.mkdir(parents=True, exist_ok=True)
        name = container_name(spec.vm_id)
        cdir = self.layout.container_dir(spec.vm_id)
        cdir.mkdir(parents=True, exist_ok=True)
        text = render_config(
            spec, name=name, base=base, upper=upper, home=home, log_file=cdir / "lxc.log"
        )
        (cdir / "config").write_text(text)

    def _discard(self, layer: Path) -> None:
        doomed = layer.with_name(f"deleteme-{layer.name}-{secrets.token_hex(3)}")
        try:
            layer.rename(doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, spec: VmSpec) -> int:
        name = container_name(spec.vm_id)
        if not self.is_alive(spec.vm_id):
            self.lxc.start(name)
        pid = self.lxc.pid(name)
        if pid == 0:
            log = self.layout.container_dir(spec.vm_id) / "lxc.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            raise BackendError(f"container {name} did not start: {' | '.join(tail)}")
        limit = self.lxc.limit(name, "memory", "memory.limit_in_bytes")
        if limit is not None and int(limit) != spec.memory_mb * 1024 * 1024:
            self.kill(spec.vm_id)
            raise BackendError(
                f"container {name}: memory limit reads back {limit}, not {spec.memory_mb} MB"
            )
        return pid

    def stop(self, vm_id: int) -> None:
        self.lxc.request_stop(container_name(vm_id))

    def kill(self, vm_id: int) -> None:
        self.lxc.kill(container_name(vm_id))

    def is_alive(self, vm_id: int) -> bool:
        return self.lxc.state(container_name(vm_id)) in _ALIVE

    def list_running(self) -> set[int]:
        return {i for n in self.lxc.running() if (i := vm_id_of(n)) is not None}

    def _devices(self) -> dict[int, str]:
        found: dict[int, str] = {}
        out = run("ip", "-o", "link", "show", check=False).stdout
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) < 2:
                continue
            dev = parts[1].strip().split("@", 1)[0]
            rest = dev[len(self.device_prefix) :]
            if dev.startswith(self.device_prefix) and rest.isdigit():
                found[int(rest)] = dev
        return found

    def list_leftovers(self) -> set[int]:
        ids: set[int] = set()
        if self.layout.lxcpath.is_dir():
            for entry in self.layout.lxcpath.iterdir():
                vm_id = vm_id_of(entry.name)
                if vm_id is not None:
                    ids.add(vm_id)
        ids |= set(self._devices())
        return ids | self.list_running()

    def cleanup(self, vm_id: int) -> None:
        name = container_name(vm_id)
        if self.is_alive(vm_id):
            raise BackendError(f"container {name} still runs: stop it before cleaning up")
        device = self._devices().get(vm_id)
        if device is not None:
            run("ip", "link", "del", device, check=False)
        self.lxc.remove_cgroups(name)
        shutil.rmtree(self.layout.container_dir(vm_id), ignore_errors=True)

    # ---- extras for operators and tests ---------------------------------------------------
    def limits(self, vm_id: int) -> dict[str, str | None]:
        """The cgroup limits of a running container, read back from cgroupfs."""
        name = container_name(vm_id)
        return {
            "memory": self.lxc.limit(name, "memory", "memory.limit_in_bytes"),
            "cpu.shares": self.lxc.limit(name, "cpu", "cpu.shares"),
            "pids.max": self.lxc.limit(name, "pids", "pids.max"),
        }

    def memory_usage(self, vm_id: int) -> int:
        value = self.lxc.limit(container_name(vm_id), "memory", "memory.usage_in_bytes")
        return int(value) if value else 0
