"""Backend kits: what the contract suite (``test_contract.py``) needs of each backend.

A kit stands for one node of one backend kind: it makes backend objects on that node
(each one new, as a restarted HKD would), hands out a :class:`VmSpec` for a test VM
whose image exists, says how long a boot and a stop may take, and checks with its own
eyes (not the backend's) that nothing of a VM is left: no process, mount, network
device, cgroup, runtime file or fresh disk overlay under the storage roots.

Kits are opened by ``open_<name>_kit(request)`` context managers (module-scoped in the
suite: one node per backend, reused by every case; ``request`` gives session fixtures
such as ``test_image`` through ``request.getfixturevalue``); closing one removes its
node. The suite's ``vms`` fixture checks after every case, with ``leaks`` and a new
backend's ``list_leftovers``, that the case left nothing of its VMs.

The KVM backend's kit lives in ``tests/hkd/backends/kvm/kit.py``, which defines
``open_kit(request)`` the same way (see ``KIT_OPENERS`` in ``conftest.py``). A kit
whose ``survives_its_maker`` is true must be picklable: the suite hands it (and a
VmSpec) to a child process that prepares and starts a VM with ``kit.backend()`` and is
then killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from qvd.hkd.addressing import host_device, mac_for
from qvd.hkd.backends.base import Backend, NetworkSpec, VmSpec
from qvd.hkd.backends.fake import FakeBackend, FakeVm
from qvd.hkd.health import HttpVmaProbe, Liveness
from qvd.hkd.ports import Port, PortFilter
from tests.conftest import scratch_dir
from tests.hkd.lxcnode import LxcNode, leaks

__all__ = ["BackendKit", "FakeKit", "LxcKit", "open_fake_kit", "open_lxc_kit"]


class BackendKit(Protocol):
    """One node of one backend kind, for the contract suite."""

    name: str
    boot_timeout: float  # seconds from start() until is_alive() (generous: event waits)
    stop_timeout: float  # seconds a graceful stop() may take to end the VM
    # its VMs outlive the process that started them (an HKD killed with SIGKILL): the
    # suite then starts one from a child process it kills, and adopts it here
    survives_its_maker: bool

    def backend(self) -> Backend:
        """A new backend object on the kit's node (as a restarted HKD makes one)."""
        ...

    def spec(self, n: int) -> VmSpec:
        """The VmSpec of test VM number ``n`` (1..50) on this node; its image exists."""
        ...

    def ready(self, spec: VmSpec) -> bool:
        """Whether the running VM's VMA answers (its init is up: a graceful stop is
        heard; a signal sent to an init before it handles signals is lost)."""
        ...

    def leaks(self, vm_id: int) -> list[str]:
        """What the kit itself finds left of ``vm_id`` on the node; empty when clean."""
        ...


def _network(bridge: str, address: str, vm_id: int, prefix: int = 24) -> NetworkSpec:
    return NetworkSpec(
        bridge=bridge, address=address, prefix=prefix, mac=mac_for(address, "54:52:00"),
        host_device=host_device("qvd", vm_id),
    )  # fmt: skip


# ---- fake ------------------------------------------------------------------------------------
@dataclass
class FakeKit:
    """In-memory VMs: the node is one dictionary every backend object of the kit shares
    (the fake's VMs live in the test process, so they cannot outlive a killed one)."""

    image: Path
    name: str = "fake"
    boot_timeout: float = 5.0
    stop_timeout: float = 5.0
    survives_its_maker: bool = False
    node: dict[int, FakeVm] = field(default_factory=dict)

    def backend(self) -> Backend:
        return FakeBackend(vms=self.node)

    def spec(self, n: int) -> VmSpec:
        vm_id = 62000 + n
        return VmSpec(
            vm_id=vm_id, name=f"contract{n}", di_id=62000, image=self.image,
            memory_mib=128, vcpus=1, cpu_weight=100, vma_secret=secrets.token_hex(32),
            network=_network("qvdfake", f"10.231.62.{n}", vm_id),
        )  # fmt: skip

    def ready(self, spec: VmSpec) -> bool:
        vm = self.node.get(spec.vm_id)
        return vm is not None and vm.running

    def leaks(self, vm_id: int) -> list[str]:
        return ["fake VM entry"] if vm_id in self.node else []


@contextlib.contextmanager
def open_fake_kit(request: pytest.FixtureRequest) -> Iterator[BackendKit]:
    root = scratch_dir("qvd-test-fakekit-")
    image = root / "62000-contract.tar"
    image.write_bytes(b"")
    kit = FakeKit(image=image)
    try:
        yield kit
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert kit.node == {}, f"the node kept VMs after the suite: {sorted(kit.node)}"


# ---- lxc -------------------------------------------------------------------------------------
_DI_ID = 61000  # a DI id of the kit's own: its base is unpacked once per session storage


@dataclass
class LxcKit:
    """Real unprivileged containers from the cached test image, on a node of the kit's
    own (private /24, bridge, run and LXC paths; the session's storage root)."""

    node: LxcNode
    image: Path
    name: str = "lxc"
    boot_timeout: float = 60.0
    stop_timeout: float = 30.0
    survives_its_maker: bool = True

    def backend(self) -> Backend:
        return self.node.backend()

    def spec(self, n: int) -> VmSpec:
        vm_id = 61000 + n
        return VmSpec(
            vm_id=vm_id, name=f"contract{n}", di_id=_DI_ID, image=self.image,
            memory_mib=256, vcpus=1, cpu_weight=100, vma_secret=secrets.token_hex(32),
            network=_network(self.node.bridge, self.node.vm_address(n), vm_id),
        )  # fmt: skip

    def ready(self, spec: VmSpec) -> bool:
        net = spec.network
        # its bridge port speaks once admitted (the HKD's anti-spoofing does the same)
        PortFilter(self.node.network().table).admit(Port(net.host_device, net.mac, net.address))
        probe = HttpVmaProbe(net.bridge, timeout=2)
        return probe.ping(net.address, 3030, spec.vma_secret) is Liveness.ANSWERED

    def leaks(self, vm_id: int) -> list[str]:
        backend = self.node.backend()
        found = leaks(backend, vm_id, self.node.storage)
        found += _processes_of(f"qvd-{vm_id}")
        layout = backend.layout
        for layer in layout.layers_of(vm_id):
            found.append(f"overlay layer {layer.name}")
        for image in (layout.overlayfs / ".images").glob(f"*-{vm_id}-overlayfs.ext4"):
            found.append(f"overlay image {image.name}")
        return found


def _processes_of(container: str) -> list[str]:
    """Processes in the container's cgroups or monitoring it (by /proc, not by LXC)."""
    found: list[str] = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            groups = (proc / "cgroup").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if (
                f"lxc.payload.{container}/" in groups
                or groups.rstrip().endswith(f"lxc.payload.{container}")
                or (cmdline.startswith("[lxc monitor]") and cmdline.rstrip().endswith(container))
            ):
                found.append(f"process {proc.name}")
    return found


@contextlib.contextmanager
def open_lxc_kit(request: pytest.FixtureRequest) -> Iterator[BackendKit]:
    test_image: Path = request.getfixturevalue("test_image")
    storage: Path = request.getfixturevalue("lxc_storage")
    root = scratch_dir("qvd-test-lxckit-")
    node = LxcNode.create(root, storage, name=f"kit{secrets.token_hex(2)}")
    images = storage / "images"
    images.mkdir(parents=True, exist_ok=True)
    image = images / f"{_DI_ID}-{test_image.name}"
    if not image.exists():
        image.hardlink_to(test_image)
    try:
        node.network().ensure()  # the bridge the veths join (an HKD makes it)
        yield LxcKit(node=node, image=image)
        left = node.backend().list_leftovers()  # every case cleaned up after itself
    finally:
        node.clean()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", node.bridge], capture_output=True, check=False)
    assert left == set(), f"the node kept VMs after the suite: {sorted(left)}"
