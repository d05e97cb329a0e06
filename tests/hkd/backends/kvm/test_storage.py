"""Disk files of KVM VMs with the real qemu-img: overlays fresh or kept, homes made,
grown and never shrunk, everything root's only, a tarball DI refused."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.storage import Storage, virtual_size
from tests.hkd.backends.kvm.node import KvmNode

pytestmark = pytest.mark.root  # a node of its own (a bridge, root-owned storage)

MIB = 1 << 20


def info(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "qcow2", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    value: dict[str, object] = json.loads(out)
    return value


def kept_by(path: Path, action: Callable[[], None]) -> bool:
    """Whether ``path`` is the same file after ``action`` (a hard link holds the old
    inode meanwhile, so the file system cannot hand it to a new file)."""
    hold = path.with_name(f"hold-{path.name}")
    os.link(path, hold)
    try:
        action()
        return path.exists() and path.stat().st_ino == hold.stat().st_ino
    finally:
        hold.unlink()


def test_overlay_fresh_at_each_prepare_unless_persistent(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    spec = kvm_node.spec(20001)
    backend.prepare(spec)
    overlay = kvm_node.overlays / "7-20001-overlay.qcow2"
    described = info(overlay)
    assert described["backing-filename"] == str(kvm_node.image)
    assert described["backing-filename-format"] == "qcow2"  # never probed
    assert overlay.stat().st_mode & 0o777 == 0o600
    assert kvm_node.overlays.stat().st_mode & 0o777 == 0o700
    assert not kept_by(overlay, lambda: backend.prepare(spec))  # made anew
    kept = kvm_node.spec(20001, persistent=True)
    backend.prepare(kept)

    def again_and_cleanup() -> None:
        backend.prepare(kept)
        backend.cleanup(20001)

    assert kept_by(overlay, again_and_cleanup)  # a persistent root survives both
    assert backend.list_leftovers() == set()
    # no longer persistent: discarded at the next start
    assert not kept_by(overlay, lambda: backend.prepare(kvm_node.spec(20001)))
    backend.cleanup(20001)
    assert not overlay.exists()


def test_a_persistent_overlay_on_another_di_goes(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    backend.prepare(kvm_node.spec(20002, persistent=True))
    (kvm_node.overlays / "7-20002-overlay.qcow2").rename(
        kvm_node.overlays / "6-20002-overlay.qcow2"
    )
    backend.prepare(kvm_node.spec(20002, persistent=True))
    assert sorted(p.name for p in kvm_node.overlays.iterdir()) == ["7-20002-overlay.qcow2"]
    backend.cleanup(20002)


def test_home_made_once_grown_never_shrunk(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    backend.prepare(kvm_node.spec(20003, home_mib=16))
    home = kvm_node.homes / "20003-data.qcow2"
    assert virtual_size(home) == 16 * MIB
    assert home.stat().st_mode & 0o777 == 0o600
    assert kvm_node.homes.stat().st_mode & 0o777 == 0o700
    inode = home.stat().st_ino
    backend.prepare(kvm_node.spec(20003, home_mib=32))
    assert virtual_size(home) == 32 * MIB
    backend.prepare(kvm_node.spec(20003, home_mib=8))
    assert virtual_size(home) == 32 * MIB
    assert home.stat().st_ino == inode
    backend.cleanup(20003)
    assert home.exists()


def test_a_tarball_di_on_a_kvm_node_is_refused(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    tarball = kvm_node.image.with_name("8-desktop.tar.zst")
    tarball.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(64))
    spec = kvm_node.spec(20004)
    bad = dataclasses.replace(spec, image=tarball)
    with pytest.raises(TerminalBackendError, match="not a qcow2 image"):
        backend.prepare(bad)
    missing = dataclasses.replace(spec, image=tarball.with_name("x"))
    with pytest.raises(TerminalBackendError, match="missing"):
        backend.prepare(missing)
    backend.cleanup(20004)


def test_the_image_is_checked_once_per_version(kvm_node: KvmNode) -> None:
    backend = kvm_node.backend()
    for _ in range(3):
        backend.prepare(kvm_node.spec(20005))
    assert kvm_node.tools.checked == [kvm_node.image]
    backend.cleanup(20005)


def test_a_linked_home_is_refused(kvm_node: KvmNode, tmp_path: Path) -> None:
    storage = Storage(kvm_node.image.parent, kvm_node.overlays, kvm_node.homes)
    storage.secure()
    target = tmp_path / "elsewhere.qcow2"
    target.write_bytes(b"")
    (kvm_node.homes / "20006-data.qcow2").symlink_to(target)
    with pytest.raises(TerminalBackendError, match="not a regular file"):
        storage.ensure_home(20006, 16)
