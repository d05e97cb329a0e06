"""A real guest: the ``test`` recipe built as a KVM image (``test_image_qcow2``, from
the qcow2 image work) boots under the backend to its VMA, and a graceful stop (ACPI
power button, heard by systemd-logind) ends it; nothing is left but its home. Its boot
files come out of the image by the project's own extraction (``bootfiles``). Skipped
where the fixture does not exist yet. Runs under the heavy lock (one guest)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from qvd.hkd.backends.kvm import KvmBackend
from tests.hkd.backends.kvm.node import KvmNode

pytestmark = [pytest.mark.root, pytest.mark.slow]

LISTENING = "listening on 0.0.0.0:3030"


@pytest.fixture
def qcow2_image(request: pytest.FixtureRequest, kvm_node: KvmNode) -> Path:
    try:
        built: Path = request.getfixturevalue("test_image_qcow2")
    except pytest.FixtureLookupError:
        pytest.skip("no test_image_qcow2 fixture here (the KVM image build has not landed)")
    image = kvm_node.image.with_name(f"9-{built.name}")
    os.link(built, image)  # the cache is on the same file system as /tmp here
    return image


def test_the_test_image_boots_to_its_vma_and_powers_off(
    kvm_node: KvmNode, qcow2_image: Path
) -> None:
    backend = KvmBackend(kvm_node.config())  # the real image checks and boot files
    base = kvm_node.spec(40001, home_mib=64)
    spec = dataclasses.replace(base, image=qcow2_image, di_id=9, memory_mib=512, vcpus=2)
    backend.prepare(spec)
    started = time.monotonic()
    backend.start(spec)
    console = ""
    deadline = started + backend.capabilities.start_timeout
    while LISTENING not in console and time.monotonic() < deadline:
        assert backend.is_alive(40001), console[-2000:]
        console += backend.console(40001)
        time.sleep(0.25)
    assert LISTENING in console, console[-2000:]
    print(f"boot_to_vma_s={time.monotonic() - started:.1f} accel={backend.facts()['accel']}")
    backend.stop(40001)
    deadline = time.monotonic() + 120
    while backend.is_alive(40001) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not backend.is_alive(40001), "the guest did not power off on ACPI"
    backend.cleanup(40001)
    assert kvm_node.leaks() == []
    assert (kvm_node.homes / "40001-data.qcow2").is_file()
