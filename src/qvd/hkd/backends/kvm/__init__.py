"""The KVM backend: one QEMU per VM, direct kernel boot from a qcow2 DI.

Accelerator: hardware KVM or TCG, chosen when the backend is made (``accel``). Disks:
a per-VM qcow2 overlay on the DI and an optional home qcow2 (``storage``), both
virtio-blk; the home has the serial ``qvd-home``. Network: a tap named after the VM's
host device on the node's bridge (``tap``), virtio-net with the VM's MAC. Identity and
VMA secret: a 0600 JSON file given to the guest through fw_cfg (``identity``). Control:
a QMP socket (``qmp``): ``system_powerdown`` to stop, ``quit`` then SIGKILL to kill.
QEMU runs in its own session (it outlives the HKD), drops to an unprivileged user
(``-runas``) under a seccomp sandbox once its files are open, and sits in its own cpu
cgroup for the VM's CPU weight. Runtime state is in a directory per VM (``runtime``),
so a backend made anew (an HKD restarted, even after kill -9) finds its QEMUs by pid
file and QMP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from qvd.config import Config
from qvd.hkd.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    TerminalBackendError,
    VmSpec,
)
from qvd.hkd.backends.hostfs import write_private
from qvd.hkd.backends.kvm.accel import HostFacts, choose_accel, host_facts
from qvd.hkd.backends.kvm.cgroup import CpuGroups
from qvd.hkd.backends.kvm.cmdline import CONSOLE_BYTES, HOME_SERIAL, MACHINES, QemuPlan, qemu_argv
from qvd.hkd.backends.kvm.identity import identity_json
from qvd.hkd.backends.kvm.images import CheckedImages, ImageTools, RealImageTools
from qvd.hkd.backends.kvm.qmp import QmpClient, QmpError
from qvd.hkd.backends.kvm.runtime import Runtime, VmRecord
from qvd.hkd.backends.kvm.storage import Storage
from qvd.hkd.backends.kvm.tap import create_tap, delete_tap, list_taps

__all__ = ["KvmBackend"]

log = logging.getLogger("qvd.hkd.kvm")

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_QUIT_GRACE = 3.0  # seconds QEMU gets to leave after ``quit`` before SIGKILL
_KILL_WAIT = 10.0
_REAP_WAIT = 1.0  # seconds to wait for an exiting child of ours to become reapable


class KvmBackend(Backend):
    name = "kvm"

    def __init__(
        self,
        config: Config,
        *,
        images: ImageTools | None = None,
        facts: HostFacts | None = None,
    ) -> None:
        self.storage = Storage(
            images=config.get_path("path.storage.images"),
            overlays=config.get_path("path.storage.overlays"),
            homes=config.get_path("path.storage.homes"),
        )
        self.runtime = Runtime(config.get_path("path.run.kvm"))
        self.groups = CpuGroups(config.get_path("path.cgroup"), self.runtime.root)
        self.device_prefix = config.get("internal.vm.network.device.prefix")
        self.accel = choose_accel(config.get("vm.kvm.accel"), facts or host_facts())
        self.machine = config.get("vm.kvm.machine").strip()
        if self.machine not in MACHINES:
            raise TerminalBackendError(f"vm.kvm.machine = {self.machine!r}: expected pc or q35")
        if not config.get_bool("vm.kvm.virtio"):
            raise TerminalBackendError("vm.kvm.virtio = 0: this backend has virtio devices only")
        self.tb_size_mib = config.get_int("vm.kvm.tb_size")
        self.user = config.get("vm.kvm.user").strip()
        if not _USER.fullmatch(self.user) or self.user == "root":
            raise TerminalBackendError(
                f"vm.kvm.user = {self.user!r}: expected an unprivileged system user name"
            )
        self.qmp_timeout = config.get_float("internal.hkd.kvm.qmp_timeout")
        self.capabilities = Capabilities(
            needs_vma_poweroff=True,
            start_timeout=config.get_float(f"internal.hkd.kvm.start_timeout.{self.accel.value}"),
        )
        self.images = CheckedImages(
            images or RealImageTools(),
            config.get_path("path.storage.bootfiles"),
            config.get_int("di.unpack.max_bytes"),
        )
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self.storage.secure()

    def facts(self) -> dict[str, str]:
        return {"accel": self.accel.value, "machine": self.machine}

    # ---- storage ------------------------------------------------------------------------
    def prepare(self, spec: VmSpec) -> None:
        if self.is_alive(spec.vm_id):
            return  # its disks are in use: a running VM is prepared
        self.images.boot_files(spec.image)
        self.runtime.ensure(spec.vm_id)
        overlay = self.storage.overlay(spec.di_id, spec.vm_id)
        record = VmRecord(overlay=overlay.name, overlay_persistent=spec.overlay_persistent)
        # written before the overlay: cleanup always knows whether an overlay may go
        write_private(self.runtime.record_path(spec.vm_id), record.to_json())
        self.storage.ensure_overlay(
            spec.image, spec.di_id, spec.vm_id, persistent=spec.overlay_persistent
        )
        if spec.home is not None:
            self.storage.ensure_home(spec.vm_id, spec.home.size_mib)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, spec: VmSpec) -> int:
        vm_id = spec.vm_id
        pid = self.runtime.pid(vm_id)
        if pid is not None:
            return pid
        overlay = self.storage.overlay(spec.di_id, vm_id)
        home = self.storage.home(vm_id) if spec.home is not None else None
        if not overlay.is_file() or (home is not None and not home.is_file()):
            raise BackendError(f"VM {vm_id} is not prepared: its disks are missing")
        boot = self.images.boot_files(spec.image)
        self.runtime.ensure(vm_id)
        for stale in (self.runtime.qmp(vm_id), self.runtime.pidfile(vm_id)):
            stale.unlink(missing_ok=True)
        self._ensure_user()
        net = spec.network
        plan = QemuPlan(
            vm_id=vm_id, accel=self.accel, tb_size_mib=self.tb_size_mib, machine=self.machine,
            memory_mib=spec.memory_mib, vcpus=spec.vcpus, kernel=boot.kernel,
            initrd=boot.initrd, kernel_cmdline=boot.cmdline, overlay=overlay, home=home,
            tap=net.host_device, mac=net.mac, identity=self.runtime.identity(vm_id),
            qmp=self.runtime.qmp(vm_id), pidfile=self.runtime.pidfile(vm_id), runas=self.user,
        )  # fmt: skip
        argv = qemu_argv(plan)
        write_private(
            plan.identity,
            identity_json(vm_id, spec.name, spec.vma_secret, HOME_SERIAL if home else None),
        )
        try:
            create_tap(net.host_device, net.bridge)
            try:
                pid = self._spawn(vm_id, argv)
                self.groups.place(vm_id, pid, spec.cpu_weight)
            except BaseException:
                self._undo_start(vm_id, net.host_device)
                raise
        finally:
            # QEMU read the identity into memory when it started (fw_cfg file=), or
            # never will: the secret does not stay on the node's disk
            plan.identity.unlink(missing_ok=True)
        log.info("VM %s: QEMU %s runs (accel=%s)", vm_id, pid, self.accel.value)
        return pid

    def _spawn(self, vm_id: int, argv: list[str]) -> int:
        """Start QEMU in a session of its own and wait until its QMP answers."""
        logfile = self.runtime.log(vm_id)
        logfile.unlink(missing_ok=True)
        fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=_ENV,
                start_new_session=True, close_fds=True, cwd="/",
            )  # fmt: skip
        except FileNotFoundError:
            raise TerminalBackendError(
                f"{argv[0]} is not installed (apt-get install qemu-system-x86)"
            ) from None
        finally:
            os.close(fd)
        with self._lock:
            self._children[vm_id] = proc
        deadline = time.monotonic() + self.qmp_timeout
        while True:
            if proc.poll() is not None:
                tail = self.runtime.log_tail(vm_id) or f"exit {proc.returncode}"
                raise BackendError(f"QEMU of VM {vm_id} ended at start: {tail}")
            if self.runtime.qmp(vm_id).exists():
                try:
                    self._qmp(vm_id, "query-status", timeout=2)
                    break
                except QmpError:
                    pass
            if time.monotonic() > deadline:
                raise BackendError(
                    f"QEMU of VM {vm_id} did not answer on QMP in {self.qmp_timeout:g} s"
                )
            time.sleep(0.05)
        pid = self.runtime.pid(vm_id)
        if pid != proc.pid:
            raise BackendError(f"QEMU of VM {vm_id}: its pid file names {pid}, not {proc.pid}")
        return pid

    def _qmp(
        self, vm_id: int, name: str, arguments: dict[str, object] | None = None, *,
        timeout: float = 5.0,
    ) -> Any:  # fmt: skip
        """One QMP command to the VM's QEMU, on a connection of its own; raises
        :class:`QmpError`."""
        with QmpClient(self.runtime.qmp(vm_id), timeout=timeout) as qmp:
            return qmp.execute(name, arguments)

    def _ensure_user(self) -> None:
        try:
            pwd.getpwnam(self.user)
            return
        except KeyError:
            pass
        with self._lock:
            done = subprocess.run(
                ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", "--user-group", self.user],
                capture_output=True, text=True, env=_ENV, check=False,
            )  # fmt: skip
        if done.returncode not in (0, 9):  # 9: made meanwhile
            raise BackendError(f"useradd {self.user}: {done.stderr.strip()}")

    def _undo_start(self, vm_id: int, device: str) -> None:
        """End what a failed start made (its QEMU, tap and cpu group); what ``prepare``
        made (disks, runtime directory) stays for the next try or ``cleanup``."""
        try:
            self.kill(vm_id)
        finally:
            self._end_child(vm_id)  # one that never wrote its pid file, too
            delete_tap(device)
            with contextlib.suppress(BackendError):
                self.groups.remove(vm_id)

    def _end_child(self, vm_id: int) -> None:
        """SIGKILL and reap the QEMU this object started for ``vm_id``, if it runs."""
        with self._lock:
            proc = self._children.pop(vm_id, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _reap(self, vm_id: int, *, gone: bool = False) -> None:
        """Forget (and reap) the QEMU this object started for ``vm_id`` once it has
        ended; with ``gone`` (the VM is seen gone, killed perhaps by another backend
        object) wait a moment for its exit, so that no zombie is left behind."""
        with self._lock:
            proc = self._children.get(vm_id)
        if proc is None:
            return
        if gone and proc.poll() is None and _exiting(proc.pid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(_REAP_WAIT)
        if proc.poll() is not None:
            with self._lock:
                if self._children.get(vm_id) is proc:
                    del self._children[vm_id]

    def stop(self, vm_id: int) -> None:
        if not self.is_alive(vm_id):
            return
        try:
            self._qmp(vm_id, "system_powerdown")
        except QmpError as exc:
            log.warning("VM %s: powerdown not sent: %s", vm_id, exc)

    def kill(self, vm_id: int) -> None:
        pid = self.runtime.pid(vm_id)
        if pid is None:
            self._reap(vm_id)
            return
        with contextlib.suppress(QmpError):  # a hung or half-dead QEMU: SIGKILL below
            self._qmp(vm_id, "quit", timeout=2)
        if self._wait_gone(vm_id, _QUIT_GRACE):
            return
        if self.runtime.pid(vm_id) == pid:  # still our QEMU, never a reused PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not self._wait_gone(vm_id, _KILL_WAIT):
            raise BackendError(f"QEMU {pid} of VM {vm_id} outlived SIGKILL")

    def _wait_gone(self, vm_id: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if not self.is_alive(vm_id):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def is_alive(self, vm_id: int) -> bool:
        alive = self.runtime.pid(vm_id) is not None
        self._reap(vm_id, gone=not alive)
        return alive

    def list_running(self) -> set[int]:
        return {vm_id for vm_id in self.runtime.vm_ids() if self.is_alive(vm_id)}

    def list_leftovers(self) -> set[int]:
        # a non-persistent overlay always has its runtime directory (vm.json is written
        # before the overlay, and removed after it): the overlays need no scan of their own
        return (
            self.runtime.vm_ids()
            | set(list_taps(self.device_prefix))
            | self.groups.vm_ids()
            | self.list_running()
        )

    def cleanup(self, vm_id: int) -> None:
        if self.is_alive(vm_id):
            raise BackendError(f"VM {vm_id} still runs: stop it before cleaning up")
        self._end_child(vm_id)  # reap a QEMU this object started (dead, maybe a zombie)
        device = list_taps(self.device_prefix).get(vm_id)
        if device is not None:
            delete_tap(device)
        self.groups.remove(vm_id)
        record = self.runtime.record(vm_id)
        if record is not None and not record.overlay_persistent:
            self.storage.discard_overlays(vm_id)
        self.runtime.remove(vm_id)  # last: see list_leftovers

    # ---- extras for operators and tests -------------------------------------------------
    def status(self, vm_id: int) -> str | None:
        """QEMU's run state (``running``, ``shutdown`` ...) by QMP; None when it does not
        answer."""
        if not self.is_alive(vm_id):
            return None
        try:
            value = self._qmp(vm_id, "query-status")
        except QmpError:
            return None
        return str(value.get("status")) if isinstance(value, dict) else None

    def console(self, vm_id: int) -> str:
        """What the guest wrote to its serial console since the last read (bounded)."""
        if not self.is_alive(vm_id):
            return ""
        try:
            ring = {"device": "console", "size": CONSOLE_BYTES, "format": "utf8"}
            text = self._qmp(vm_id, "ringbuf-read", ring)
        except QmpError:
            return ""
        return str(text)

    def cpu_shares(self, vm_id: int) -> int | None:
        return self.groups.shares(vm_id)


def _exiting(pid: int) -> bool:
    """Whether our child ``pid`` is on its way out: its command line is gone (a zombie,
    or a process whose memory was already released)."""
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
