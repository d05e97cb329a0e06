"""Disk image files: recognising their format, checking every member of an LXC
tarball before anything is written, unpacking them safely, and checking a KVM
image's qcow2 header before any QEMU tool opens it.

Used by the node daemon (unpacking a DI's base) and the admin API (validating an
upload). It depends on nothing else of ``qvd``.
"""

from qvd.imagefile.qcow2 import (
    Qcow2Info,
    Qcow2Rejected,
    Qcow2TooLarge,
    check_qcow2,
    check_qcow2_fd,
    is_qcow2,
)
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
    "Qcow2Info",
    "Qcow2Rejected",
    "Qcow2TooLarge",
    "TarReport",
    "check_qcow2",
    "check_qcow2_fd",
    "check_tar",
    "decompressor_for",
    "is_qcow2",
    "unpack_checked",
]
