"""Disk image files: recognising their format, checking every member of an LXC
tarball before anything is written, and unpacking them safely.

Used by the node daemon (unpacking a DI's base) and the admin API (validating an
upload). It depends on nothing else of ``qvd``.
"""

from qvd.imagefile.tarcheck import (
    IMAGE_SUFFIXES,
    ImageRejected,
    Limits,
    TarReport,
    check_tar,
    decompressor_for,
)
from qvd.imagefile.unpack import unpack_checked

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageRejected",
    "Limits",
    "TarReport",
    "check_tar",
    "decompressor_for",
    "unpack_checked",
]
