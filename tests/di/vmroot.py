"""The cached VM stage of the ``test`` recipe (kernel, systemd, no VMA yet) unpacked into
a fresh directory: a real root to run the image stage's systemd setup on."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from qvd.di import load_recipe, unpack_image
from qvd.di.vmstage import vm_stage_key

__all__ = ["unpacked_vm_stage"]


@contextlib.contextmanager
def unpacked_vm_stage(qcow2_image: Path) -> Iterator[Path]:
    """The VM stage the cached ``qcow2_image`` was built on, unpacked; removed after."""
    key = vm_stage_key(load_recipe("test"))
    stage = qcow2_image.parent / "stages" / f"test-vm-{key}.tar.zst"
    assert stage.is_file(), f"{stage} is missing: the qcow2 fixture builds it"
    where = Path(f"/var/tmp/qvd-test-vmroot-{os.getpid()}-{secrets.token_hex(3)}")
    where.mkdir(mode=0o700)
    try:
        unpack_image(stage, where / "root")
        yield where / "root"
    finally:
        shutil.rmtree(where, ignore_errors=True)
