"""systemd as init, set up on a real root (the cached VM stage of the ``test`` recipe):
as an LXC tarball with ``init = "systemd"`` gets it (no DHCP client, the container's
network is LXC's) and as a KVM image gets it (DHCP by networkd, resolved)."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.di.build import LxcTarball
from qvd.di.progress import StepPlan
from qvd.di.qcow2 import Qcow2Image
from qvd.di.recipe import load_recipe
from qvd.di.sysinit import MASKED_UNITS, NETWORK_FILE, UNIT_NAME, vma_unit
from tests.di.vmroot import unpacked_vm_stage

WANTS = "etc/systemd/system/multi-user.target.wants"


@pytest.fixture
def vm_root(test_image_qcow2: Path) -> Iterator[Path]:
    with unpacked_vm_stage(test_image_qcow2) as root:
        conf = root / "etc/qvd/vma.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text("vma.default.lang = C.UTF-8\n")  # as the VMA step writes it
        yield root


def _finish(fmt: LxcTarball | Qcow2Image, root: Path, init: str) -> None:
    recipe = dataclasses.replace(load_recipe("test"), init=init)
    plan = StepPlan(fmt.steps(recipe), None)
    fmt.finish(recipe, root, plan, io.StringIO())


def _common(root: Path) -> None:
    unit = root / "usr/lib/systemd/system" / UNIT_NAME
    assert unit.read_text() == vma_unit()
    assert os.readlink(root / WANTS / UNIT_NAME).endswith(f"/{UNIT_NAME}")
    for masked in MASKED_UNITS:
        assert os.readlink(root / "etc/systemd/system" / masked) == "/dev/null", masked
    assert (
        (root / "etc/qvd/vma.conf")
        .read_text()
        .endswith("vma.default.lang = C.UTF-8\nvma.init = systemd\n")
    )
    assert (root / "etc/machine-id").read_text() == ""
    preset = (root / "etc/systemd/system-preset/00-qvd.preset").read_text()
    assert preset.endswith("disable *\n")
    assert f"enable {UNIT_NAME}\n" in preset
    usr = (root / "usr").stat().st_mtime
    assert (root / "etc/.updated").stat().st_mtime >= usr  # no ldconfig at each boot


def test_an_lxc_tarball_with_systemd_as_init(vm_root: Path) -> None:
    resolv_before = (
        os.readlink(vm_root / "etc/resolv.conf")
        if (vm_root / "etc/resolv.conf").is_symlink()
        else (vm_root / "etc/resolv.conf").read_text()
    )
    _finish(LxcTarball(), vm_root, "systemd")
    _common(vm_root)
    assert not (vm_root / NETWORK_FILE).exists()  # LXC sets the container's address
    assert not (vm_root / WANTS / "systemd-networkd.service").exists()
    resolv = vm_root / "etc/resolv.conf"
    assert (os.readlink(resolv) if resolv.is_symlink() else resolv.read_text()) == resolv_before


def test_an_lxc_tarball_with_the_vma_as_init_is_left_alone(vm_root: Path) -> None:
    _finish(LxcTarball(), vm_root, "vma")
    assert not (vm_root / "usr/lib/systemd/system" / UNIT_NAME).exists()
    assert (vm_root / "etc/qvd/vma.conf").read_text() == "vma.default.lang = C.UTF-8\n"


def test_a_kvm_image_boots_systemd_whatever_the_recipe_says(vm_root: Path) -> None:
    _finish(Qcow2Image(), vm_root, "vma")
    _common(vm_root)
    assert "DHCP=ipv4" in (vm_root / NETWORK_FILE).read_text()
    for unit in ("systemd-networkd.service", UNIT_NAME):
        assert (vm_root / WANTS / unit).is_symlink(), unit
    resolved = "etc/systemd/system/sysinit.target.wants/systemd-resolved.service"
    assert (vm_root / resolved).is_symlink()
    assert os.readlink(vm_root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
