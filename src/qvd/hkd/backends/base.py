"""The hypervisor interface: one narrow contract that every backend implements.

The HKD speaks only this interface and never branches on a backend's name. A
backend knows nothing of the database: it receives a :class:`VmSpec` (everything it
needs, already resolved) and answers in terms of ``vm_id``. Container names, PIDs,
mount points and sockets stay inside the backend.

Every operation is idempotent: ``prepare`` on a prepared VM, ``start`` on a running
one, ``stop``/``kill`` on a dead one and ``cleanup`` on a clean one all succeed
without doing anything twice. Failures raise :class:`BackendError`; a failure no retry
can fix (a bad image, a missing file) raises :class:`TerminalBackendError`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Backend",
    "BackendError",
    "Capabilities",
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
    """What a backend can do, declared rather than discovered by name."""

    shares_base_image: bool  # several VMs of one DI share one unpacked base
    persistent_home: bool
    memory_limit: bool
    needs_vma_poweroff: bool  # a clean stop goes through the VMA's poweroff


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSpec:
    """A VM's place on the node's bridge."""

    bridge: str
    address: str  # the VM's fixed IPv4 address
    prefix: int  # prefix length of the VM network
    mac: str
    host_device: str  # host-side interface name (veth or tap), e.g. qvd10000


@dataclass(frozen=True, slots=True, kw_only=True)
class VmSpec:
    """Everything a backend needs to run one VM, resolved by the HKD."""

    vm_id: int
    name: str
    di_id: int
    image: Path  # the DI file under path.storage.images
    memory_mb: int
    network: NetworkSpec
    vma_secret: str
    home_key: str | None = None  # persistent home directory name; None: no persistent home
    home_size_mib: int = 0  # its quota (the OSF's user_storage_size); 0: no quota
    overlay_persistent: bool = False
    overlay_size_mib: int = 0  # bound of the root overlay's upper layer; 0: unbounded
    cpu_shares: int = 1024
    pids_max: int = 2048
    extra: dict[str, str] = field(default_factory=dict)


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
        """Ask the VM to shut down (SIGTERM to its init); return at once."""

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
        cgroups, runtime files."""

    @abc.abstractmethod
    def cleanup(self, vm_id: int) -> None:
        """Remove what a stopped VM left (mounts, links, cgroups, runtime state). Raises
        if the VM still runs."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds itself (not the VMs)."""
