"""The ``test`` recipe with ``init = "systemd"`` built as an LXC tarball: the same unit
as the KVM image, enabled; ``vma.init = systemd``; no DHCP client (LXC gives the
container its address). Built once per machine and cached like the other images."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.di import build_image, default_cache_dir, load_recipe, read_image_info
from qvd.di.sysinit import MASKED_UNITS, NETWORK_FILE, UNIT_NAME, vma_unit

pytestmark = [pytest.mark.lxc, pytest.mark.timeout(1200)]

# The packages the VMA's systemd tests add to the `test` recipe (tests/vma): the same
# list gives the same OS stage, built once for both.
SYSTEMD_PACKAGES = ("systemd", "systemd-sysv", "dbus")


@pytest.fixture(scope="module")
def systemd_root() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("building a disk image needs root (debootstrap, chroot)")
    base = load_recipe("test")
    recipe = dataclasses.replace(
        base,
        name="test-systemd",
        packages=(*base.packages, *(p for p in SYSTEMD_PACKAGES if p not in base.packages)),
        init="systemd",
    )
    cache = os.environ.get("QVD_TEST_DI_CACHE")
    image = build_image(
        recipe,
        Path(cache) if cache else default_cache_dir(),
        progress=lambda p: print(p.render(), flush=True),
    )
    assert read_image_info(image).format == "lxc-tar-zst"
    root = Path(f"/var/tmp/qvd-test-systemd-tar-{os.getpid()}")
    root.mkdir(mode=0o700)
    try:
        subprocess.run(
            ["tar", "--zstd", "--numeric-owner", "-xpf", str(image), "-C", str(root)],
            check=True, capture_output=True,
        )  # fmt: skip
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_systemd_starts_the_vma_in_the_container(systemd_root: Path) -> None:
    root = systemd_root
    assert (root / "usr/lib/systemd/system" / UNIT_NAME).read_text() == vma_unit()
    wants = root / "etc/systemd/system/multi-user.target.wants" / UNIT_NAME
    assert os.readlink(wants).endswith(f"systemd/system/{UNIT_NAME}")
    assert (root / "etc/qvd/vma.conf").read_text().endswith("vma.init = systemd\n")
    assert os.readlink(root / "sbin/init").endswith("systemd")
    for masked in MASKED_UNITS:
        assert os.readlink(root / "etc/systemd/system" / masked) == "/dev/null", masked
    assert (root / "etc/machine-id").read_text() == ""
    # the container's network is LXC's: no DHCP client, no kernel, no resolver change
    assert not (root / NETWORK_FILE).exists()
    assert not (
        root / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
    ).exists()
    assert not (root / "boot/qvd").exists()
    assert (root / "etc/resolv.conf").read_text() == ""
