"""The image builder runs as root on the host and writes files into the root it builds.
A root holds links meant for the image (Debian's own ``etc/resolv.conf`` is one); a
package or recipe that leaves absolute links where the builder writes (resolv.conf,
machine-id, the VMA's unit and config, the network file, fstab, the initrd's module
list) would make a host-side writer follow them out of the root and overwrite the
node's files. The builder replaces the link instead: the host files stay as they were,
the image gets its own regular files."""

from __future__ import annotations

import io
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.di.progress import StepPlan
from qvd.di.sysinit import NETWORK_FILE, UNIT_NAME, configure_systemd
from qvd.di.vmstage import host_resolver
from tests.di.vmroot import unpacked_vm_stage

PLANTED = (
    "etc/resolv.conf",
    "etc/machine-id",
    "etc/qvd/vma.conf",
    f"usr/lib/systemd/system/{UNIT_NAME}",
    NETWORK_FILE,
    "etc/systemd/system-preset/00-qvd.preset",
    "etc/.updated",
)


@pytest.fixture
def victims() -> Iterator[Path]:
    """Files outside the image root, standing for the node's own."""
    folder = Path(f"/var/tmp/qvd-victims-{os.getpid()}-{secrets.token_hex(3)}")
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _plant(root: Path, victims: Path) -> dict[Path, str]:
    originals: dict[Path, str] = {}
    for index, rel in enumerate(PLANTED):
        victim = victims / f"victim-{index}"
        victim.write_text(f"node file {index}\n")
        originals[victim] = victim.read_text()
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(victim)  # absolute: followed from the host, it leaves the root
    return originals


def test_the_builder_never_writes_through_links_out_of_the_root(
    test_image_qcow2: Path, victims: Path
) -> None:
    with unpacked_vm_stage(test_image_qcow2) as root:
        originals = _plant(root, victims)
        with host_resolver(root):  # the VM stage's apt runs with the host's resolver
            assert (root / "etc/resolv.conf").is_file()
            assert not (root / "etc/resolv.conf").is_symlink()
        plan = StepPlan([("init", 1.0)], None)
        configure_systemd(root, plan, io.StringIO(), vm=True)
        for victim, text in originals.items():
            assert victim.read_text() == text, f"{victim} was written through a link"
        for rel in PLANTED:
            path = root / rel
            if rel == "etc/resolv.conf":  # the image's own link to resolved's stub
                assert os.readlink(path) == "../run/systemd/resolve/stub-resolv.conf"
            else:
                assert path.is_file(), rel
                assert not path.is_symlink(), rel
        assert (root / "etc/qvd/vma.conf").read_text() == "vma.init = systemd\n"
