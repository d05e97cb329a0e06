"""Attack: root inside a desktop with a persistent root overlay replaces ``/etc/qvd``
(or ``/etc/qvd/vma.secret``) by a link; at the next start the HKD, root on the node,
writes the VM's secret through it into a node file.

The upper layer is a plain directory on the node, so a link planted there points at
the node's own files. Before the fix the LXC backend made ``etc/qvd`` with
``mkdir(parents=True)``, chmod'ed it and opened ``vma.secret`` with ``O_TRUNC``, all
following links: the node's ``/etc/shadow`` (here a stand-in) was truncated and
overwritten. Now every component below the upper is opened without following links;
a linked directory is refused (the VM does not start), a linked file is replaced.
Real LXC backend ``prepare`` on real files (the container is not started).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.config import Config
from qvd.hkd.backends.base import NetworkSpec, TerminalBackendError, VmSpec
from qvd.hkd.backends.lxc import LxcBackend
from tests.imagefile.test_tarcheck import file_member, make_image

ORIGINAL = b"root:$6$node-shadow-stand-in:19000:0:99999:7:::\n"


def _spec(image: Path, secret: str) -> VmSpec:
    network = NetworkSpec(
        bridge="qvdnone", address="10.213.250.10", prefix=24, mac="54:52:00:00:00:10",
        host_device="qvdnone10",
    )  # fmt: skip
    return VmSpec(
        vm_id=10042, name="persistent", di_id=10001, image=image, memory_mib=128,
        vcpus=1, cpu_weight=100, network=network, vma_secret=secret, overlay_persistent=True,
    )  # fmt: skip


@pytest.fixture
def backend(tmp_path: Path, root_only: None) -> Iterator[LxcBackend]:
    config = Config().with_overrides(
        {"path.storage.root": str(tmp_path / "storage"), "path.run.lxc": str(tmp_path / "lxc")}
    )
    backend = LxcBackend(config)
    yield backend
    backend.cleanup(10042)  # unmounts the VM's bounded upper (its image stays in tmp_path)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-owned node file the attacker wants overwritten (a shadow stand-in)."""
    node_etc = tmp_path / "node-etc"
    node_etc.mkdir()
    path = node_etc / "vma.secret"  # the name the HKD writes
    path.write_bytes(ORIGINAL)
    path.chmod(0o640)
    return path


def test_a_linked_secret_directory_is_refused_not_followed(
    backend: LxcBackend, victim: Path, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "desk.tar", file_member("etc/hostname", b"desk\n"))
    spec = _spec(image, secrets.token_hex(24))
    backend.prepare(spec)  # first start: the upper is made and kept (persistent)
    upper = backend.layout.upper(spec.di_id, spec.vm_id)
    qvd_dir = upper / "etc" / "qvd"
    assert (qvd_dir / "vma.secret").read_text() == spec.vma_secret + "\n"

    # root in the desktop: /etc/qvd -> the node's directory (as seen from the node)
    (qvd_dir / "vma.secret").unlink()
    qvd_dir.rmdir()
    qvd_dir.symlink_to(victim.parent)
    with pytest.raises(TerminalBackendError, match="VMA secret"):
        backend.prepare(_spec(image, secrets.token_hex(24)))
    assert victim.read_bytes() == ORIGINAL
    assert victim.stat().st_mode & 0o777 == 0o640


def test_a_linked_secret_file_is_replaced_not_written_through(
    backend: LxcBackend, victim: Path, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "desk.tar", file_member("etc/hostname", b"desk\n"))
    spec = _spec(image, secrets.token_hex(24))
    backend.prepare(spec)
    secret_file = backend.layout.upper(spec.di_id, spec.vm_id) / "etc" / "qvd" / "vma.secret"
    secret_file.unlink()
    secret_file.symlink_to(victim)

    again = _spec(image, secrets.token_hex(24))
    backend.prepare(again)
    assert victim.read_bytes() == ORIGINAL
    assert not secret_file.is_symlink()
    assert secret_file.read_text() == again.vma_secret + "\n"
    assert os.stat(secret_file).st_mode & 0o777 == 0o600
