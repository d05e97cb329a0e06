"""The hypervisor interface: one narrow contract that every backend implements.

The HKD speaks only this interface and never branches on a backend's name. A
backend knows nothing of the database: it receives a :class:`VmSpec` (everything it
needs, already resolved, in hypervisor-neutral terms) and answers in terms of
``vm_id``. Container names, PIDs, disk files, mount points and sockets stay inside the
backend, and so does how a home or a root overlay is stored: the HKD only says whether
the VM has a persistent home (and its size) and whether its root changes persist.
Each backend maps the neutral figures (memory, vCPUs, CPU weight) to its own knobs and
reads its own settings (``vm.lxc.*``, ``vm.kvm.*``) from the node configuration it is
made with.

Every operation is idempotent: ``prepare`` on a prepared VM, ``start`` on a running
one, ``stop``/``kill`` on a dead one and ``cleanup`` on a clean one all succeed
without doing anything twice. A backend object made anew (an HKD restarted, even after
kill -9) sees the VMs the last one started (``list_running``, ``is_alive``) and can
stop, kill and clean them: that is adoption. Failures raise :class:`BackendError`; a
failure no retry can fix (a bad image, a missing file, a name that cannot be stored)
raises :class:`TerminalBackendError`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Backend",
    "BackendError",
    "Capabilities",
    "HomeSpec",
    "NetworkSpec",
    "TerminalBackendError",
    "VmSpec",
]


class BackendError(Exception):
    """An operation failed; retrying may help."""


class TerminalBackendError(BackendError):
    """An operation failed in a way that retrying cannot fix (bad image, bad config)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What the HKD must do differently for a backend; every field is read by the HKD."""

    # a clean stop goes through the VMA's ``poweroff`` before ``stop()`` (the guest's
    # own init shuts down; a container's init is the VMA and takes SIGTERM instead)
    needs_vma_poweroff: bool
    # seconds a start may take until the VMA answers (a VM boots a kernel, and under
    # TCG slowly); the HKD waits the larger of this and
    # ``internal.hkd.vmhandler.vma.failed.max_time.on.starting``
    start_timeout: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSpec:
    """A VM's place on the node's bridge."""

    bridge: str
    address: str  # the VM's fixed IPv4 address
    prefix: int  # prefix length of the VM network
    mac: str
    host_device: str  # host-side interface name (veth or tap), e.g. qvd10000
    gateway: str | None = None  # default route given to the VM; None: no route out
    dns: tuple[str, ...] = ()  # name servers the VM uses (with a gateway only); (): none


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeSpec:
    """A persistent home. Where and how it is stored (a loop-mounted file system, a
    disk image, per user or per VM) is the backend's choice."""

    login: str  # the VM's user (a backend keeping homes per user names them after it)
    size_mib: int  # its size (the OSF's user_storage_size), > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VmSpec:
    """Everything a backend needs to run one VM, resolved by the HKD."""

    vm_id: int
    name: str  # the VM's name (data: a backend validates it where it meets a file)
    di_id: int
    image: Path  # the DI file under path.storage.images
    memory_mib: int  # the OSF's memory
    vcpus: int  # virtual CPUs (a container: at most this many CPUs of time)
    cpu_weight: int  # relative CPU share, 1..10000, 100 = normal (cgroup v2 semantics)
    network: NetworkSpec
    vma_secret: str
    home: HomeSpec | None = None  # None: no persistent home
    overlay_persistent: bool = False  # keep the root's changes across restarts


class Backend(abc.ABC):
    """A hypervisor: LXC containers or KVM virtual machines."""

    name: str
    capabilities: Capabilities

    @abc.abstractmethod
    def prepare(self, spec: VmSpec) -> None:
        """Make the VM's storage ready (base image, root overlay, home)."""

    @abc.abstractmethod
    def start(self, spec: VmSpec) -> int:
        """Start the VM if it is not running; return the PID that represents it."""

    @abc.abstractmethod
    def stop(self, vm_id: int) -> None:
        """Ask the VM to shut down (SIGTERM to a container's init, ACPI power button to
        a virtual machine); return at once."""

    @abc.abstractmethod
    def kill(self, vm_id: int) -> None:
        """End every process of the VM now."""

    @abc.abstractmethod
    def is_alive(self, vm_id: int) -> bool:
        """Whether the VM runs."""

    @abc.abstractmethod
    def list_running(self) -> set[int]:
        """IDs of the VMs this backend runs on this node (for adoption after a restart)."""

    @abc.abstractmethod
    def list_leftovers(self) -> set[int]:
        """IDs of VMs with anything left on the node (running or not): mounts, links,
        cgroups, runtime files, disk overlays of a non-persistent root."""

    @abc.abstractmethod
    def cleanup(self, vm_id: int) -> None:
        """Remove what a stopped VM left (mounts, links, cgroups, runtime state, the
        overlay of a non-persistent root); a persistent home or root stays. Raises if
        the VM still runs."""

    def facts(self) -> dict[str, str]:
        """What the backend chose when it was made (e.g. ``accel=tcg``), for the HKD's
        log at start; names and values are short words."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds itself (not the VMs)."""
