"""The output formats by name: ``lxc-tar-zst`` (LXC, the default) and ``qcow2`` (KVM)."""

from __future__ import annotations

from qvd.di.build import LxcTarball, OutputFormat
from qvd.di.errors import DiError
from qvd.di.qcow2 import Qcow2Image

__all__ = ["DEFAULT_FORMAT", "FORMAT_NAMES", "output_format"]

DEFAULT_FORMAT = LxcTarball.name
FORMAT_NAMES = (LxcTarball.name, Qcow2Image.name)


def output_format(name: str) -> OutputFormat:
    """The format called ``name``; ``DiError`` naming the known ones otherwise."""
    if name == LxcTarball.name:
        return LxcTarball()
    if name == Qcow2Image.name:
        return Qcow2Image()
    raise DiError(f"unknown image format {name!r} (have: {', '.join(FORMAT_NAMES)})")
