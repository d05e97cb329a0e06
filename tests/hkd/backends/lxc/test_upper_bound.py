"""Bounded overlay uppers on real loop mounts (the LXC backend's ``prepare`` and
``cleanup``, no container started): each layer is a file system of ``vm.overlay.size``
MiB holding both the upper and LXC's workdir, fresh at each start unless persistent,
unmounted by cleanup with a kept upper's files in its image; 0 leaves it unbounded."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.config import Config, ConfigValueError
from qvd.hkd.backends.base import NetworkSpec, VmSpec
from qvd.hkd.backends.homefs import home_image, release_home
from qvd.hkd.backends.lxc import LxcBackend
from tests.conftest import scratch_dir
from tests.imagefile.test_tarcheck import file_member, make_image

VM_ID, DI_ID = 10077, 10005


@pytest.fixture
def backend(root_only: None) -> Iterator[LxcBackend]:
    root = scratch_dir("qvd-test-upper-")
    config = Config().with_overrides(
        {"path.storage.root": str(root / "storage"), "path.run.lxc": str(root / "lxc")}
    )
    backend = LxcBackend(config)
    try:
        yield backend
    finally:
        for layer in backend.layout.overlayfs.glob("*-overlayfs"):
            if os.path.ismount(layer):
                release_home(layer)
        shutil.rmtree(root, ignore_errors=True)


def _spec(backend: LxcBackend, *, size: int, persistent: bool = False) -> VmSpec:
    image = backend.layout.images / "desk.tar"
    if not image.exists():
        make_image(image, file_member("etc/hostname", b"desk\n"))
    network = NetworkSpec(
        bridge="qvdnone", address="10.213.251.10", prefix=24, mac="54:52:00:00:01:10",
        host_device="qvdnone77",
    )  # fmt: skip
    # the bound is the backend's own setting (vm.overlay.size), as a node restarted
    # with another value would read it
    backend.overlay_size_mib = size
    return VmSpec(
        vm_id=VM_ID, name="bounded", di_id=DI_ID, image=image, memory_mib=128, vcpus=1,
        cpu_weight=100, network=network, vma_secret=secrets.token_hex(16),
        overlay_persistent=persistent,
    )  # fmt: skip


def _size_mib(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize / (1 << 20)


def _fill(path: Path, mib: int) -> int:
    """Write up to ``mib`` MiB into ``path``; the errno that stopped it (0: none)."""
    chunk = b"\0" * (1 << 20)
    try:
        with open(path, "wb") as f:
            for _ in range(mib):
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_an_upper_is_a_file_system_of_its_size(backend: LxcBackend) -> None:
    backend.prepare(_spec(backend, size=24))
    layer = backend.layout.layer(DI_ID, VM_ID)
    upper = backend.layout.upper(DI_ID, VM_ID)
    assert os.path.ismount(layer)  # upper and LXC's olwork beside it: one file system
    assert os.stat(upper).st_dev == os.stat(layer).st_dev
    assert 16 < _size_mib(layer) <= 24
    options = next(
        line.split()[5] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(layer)
    )  # fmt: skip
    assert {"nosuid", "nodev"} <= set(options.split(","))
    assert (upper / "etc/qvd/vma.secret").is_file()
    assert _fill(upper / "fill", 64) == errno.ENOSPC
    assert home_image(layer).stat().st_blocks * 512 <= 25 << 20  # the node gave 24 MiB at most


def test_a_fresh_upper_is_a_new_file_system_at_each_start(backend: LxcBackend) -> None:
    backend.prepare(_spec(backend, size=24))
    upper = backend.layout.upper(DI_ID, VM_ID)
    (upper / "left-by-the-last-run").write_text("x")
    backend.cleanup(VM_ID)
    layer = backend.layout.layer(DI_ID, VM_ID)
    assert not os.path.ismount(layer)
    backend.prepare(_spec(backend, size=24))
    assert os.path.ismount(layer)
    assert not (upper / "left-by-the-last-run").exists()
    assert [p.name for p in backend.layout.overlayfs.iterdir()] == [".images", layer.name]
    assert [p.name for p in home_image(layer).parent.iterdir()] == [f"{layer.name}.ext4"]


def test_a_persistent_upper_keeps_its_files_and_grows(backend: LxcBackend) -> None:
    backend.prepare(_spec(backend, size=24, persistent=True))
    upper = backend.layout.upper(DI_ID, VM_ID)
    (upper / "root").mkdir()
    (upper / "root/kept").write_text("kept")
    backend.cleanup(VM_ID)
    layer = backend.layout.layer(DI_ID, VM_ID)
    assert not os.path.ismount(layer)
    assert not (upper / "root/kept").exists()  # in the image, not on the node's disk
    backend.prepare(_spec(backend, size=40, persistent=True))
    assert (upper / "root/kept").read_text() == "kept"
    assert 32 < _size_mib(layer) <= 40


def test_size_zero_leaves_a_new_upper_unbounded(backend: LxcBackend) -> None:
    backend.prepare(_spec(backend, size=0))
    layer = backend.layout.layer(DI_ID, VM_ID)
    assert not os.path.ismount(layer)
    assert not home_image(layer).exists()
    assert backend.layout.upper(DI_ID, VM_ID).is_dir()


def test_the_bound_is_the_backends_setting_and_a_negative_one_is_refused(
    backend: LxcBackend,
) -> None:
    assert backend.overlay_size_mib == 2048  # vm.overlay.size's default
    assert backend.facts() == {"homes": "per-vm", "overlay_mib": "2048"}
    root = backend.layout.images.parent.parent
    config = Config().with_overrides(
        {"path.storage.root": str(root / "storage"), "path.run.lxc": str(root / "lxc"),
         "vm.overlay.size": "-1"}
    )  # fmt: skip
    with pytest.raises(ConfigValueError, match=r"vm\.overlay\.size is -1"):
        LxcBackend(config)


def test_a_layer_left_mounted_without_its_container_is_a_leftover(backend: LxcBackend) -> None:
    """An HKD killed in ``prepare`` after the layer was mounted, before the container's
    directory was written: a new backend lists the VM and its cleanup unmounts it."""
    backend.prepare(_spec(backend, size=24))
    shutil.rmtree(backend.layout.container_dir(VM_ID))
    layer = backend.layout.layer(DI_ID, VM_ID)
    assert os.path.ismount(layer)
    assert VM_ID in backend.list_leftovers()
    backend.cleanup(VM_ID)
    assert not os.path.ismount(layer)
    assert VM_ID not in backend.list_leftovers()
