"""The ``tiny`` image (Debian minbase, python3 and the VMA), built once per machine into
the image cache like the suite's other images, then reused while its hash holds."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from qvd.di import ensure_image
from tests.vma.conftest import (  # noqa: F401 (the container and display fixtures of test_desktop_image)
    bridge,
    proxies,
    scratch,
    start_container,
    test_image,
    xvfb,
)


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    if os.geteuid() != 0:
        pytest.fail("building a disk image needs root (debootstrap, chroot)")
    if shutil.which("debootstrap", path="/usr/sbin:/usr/bin") is None:
        pytest.fail("debootstrap is missing: run scripts/deps-di.sh")
    return ensure_image("tiny", progress=lambda p: print(p.render(), flush=True))
