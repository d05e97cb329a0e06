"""Checking a qcow2 disk image from its header, before any QEMU tool opens it.

A qcow2 file may name other files that QEMU then opens with the node's rights: a
*backing file* (``-b /etc/shadow``: the guest reads the node's file, or another
tenant's disk, as the lower layer of its own) and an *external data file* (the guest's
writes land in a host path of the image author's choice). ``qemu-img info`` already
follows a backing file, so the header is parsed here, in Python, from the file itself
(opened without following a link), and an image is refused, with the reason, when:

- it is not a regular file, or does not start with the qcow2 magic;
- its version is not 2 or 3, or its header (length, cluster size, refcount order,
  tables) does not fit the file: a truncated or lying header;
- it names a backing file (``backing_file_offset`` not 0, or a backing format
  extension), an external data file (incompatible feature bit 2 or the data file
  name extension), or is encrypted (``crypt_method`` or the encryption extension);
- it sets an incompatible feature this module does not know, is marked corrupt or
  dirty (not closed cleanly), or holds internal snapshots;
- its virtual size is over the caller's bound.

Layout (big-endian), from QEMU's ``docs/interop/qcow2.txt``: magic, version, backing
file offset and size, cluster bits, virtual size, crypt method, L1 size and offset,
refcount table offset and clusters, snapshot count and offset; version 3 adds the
feature bitmaps, refcount order and header length; header extensions (type, length,
data padded to 8 bytes, ending with type 0) follow the header inside the first cluster.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from qvd.imagefile.tarcheck import ImageRejected

__all__ = [
    "QCOW2_MAGIC",
    "Qcow2Info",
    "Qcow2Rejected",
    "Qcow2TooLarge",
    "check_qcow2",
    "check_qcow2_fd",
    "is_qcow2",
]

QCOW2_MAGIC = b"QFI\xfb"

_V2_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # 72 bytes
_V3_FIELDS = struct.Struct(">QQQII")  # 32 bytes more: features, refcount order, length
_V2_LENGTH = _V2_HEADER.size
_V3_MIN_LENGTH = _V2_LENGTH + _V3_FIELDS.size  # 104

# incompatible feature bits (qcow2.txt)
_DIRTY = 1 << 0
_CORRUPT = 1 << 1
_EXTERNAL_DATA = 1 << 2
_COMPRESSION_TYPE = 1 << 3
_EXTENDED_L2 = 1 << 4
_KNOWN_INCOMPATIBLE = _DIRTY | _CORRUPT | _EXTERNAL_DATA | _COMPRESSION_TYPE | _EXTENDED_L2

# header extension types
_EXT_END = 0x00000000
_EXT_BACKING_FORMAT = 0xE2792ACA
_EXT_ENCRYPTION = 0x0537BE77
_EXT_DATA_FILE = 0x44415441
_EXT_REFUSED = {
    _EXT_BACKING_FORMAT: "names a backing file format (a DI must stand alone)",
    _EXT_ENCRYPTION: "is encrypted (the node cannot open it)",
    _EXT_DATA_FILE: "names an external data file (its data must be inside the image)",
}
_COMPRESSION = {0: "zlib", 1: "zstd"}
_MAX_EXTENSIONS = 64
_MAX_L1_BYTES = 32 << 20  # QEMU's QCOW_MAX_L1_SIZE
_MAX_REFCOUNT_TABLE_BYTES = 8 << 20  # QEMU's QCOW_MAX_REFTABLE_SIZE


class Qcow2Rejected(ImageRejected):
    """A qcow2 image that is unsafe to open or is not a qcow2 image at all."""


class Qcow2TooLarge(Qcow2Rejected):
    """A qcow2 image whose virtual disk is larger than the caller's bound."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Qcow2Info:
    """What the header of an accepted image says."""

    version: int  # 2 or 3
    virtual_size: int  # bytes of the disk the guest sees
    cluster_size: int
    file_size: int  # bytes of the file itself
    compression: str  # "zlib" or "zstd" (for compressed clusters)
    extended_l2: bool


def is_qcow2(path: Path) -> bool:
    """Whether the file starts with the qcow2 magic (it is not followed if a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.pread(fd, len(QCOW2_MAGIC), 0) == QCOW2_MAGIC
    finally:
        os.close(fd)


def check_qcow2(path: Path, *, max_virtual_bytes: int) -> Qcow2Info:
    """Check the qcow2 image at ``path`` (see the module's rules); raise
    :class:`Qcow2Rejected` with the reason, prefixed with the file's name."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise Qcow2Rejected(f"{path.name}: cannot open it ({exc.strerror})") from None
    try:
        return check_qcow2_fd(fd, path.name, max_virtual_bytes=max_virtual_bytes)
    finally:
        os.close(fd)


def check_qcow2_fd(fd: int, name: str, *, max_virtual_bytes: int) -> Qcow2Info:
    """:func:`check_qcow2` of a file the caller opened (and goes on using): the file
    checked is the file opened next, whatever happens to its path."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Qcow2Rejected("not a regular file")
        return _check(fd, st.st_size, max_virtual_bytes)
    except Qcow2Rejected as exc:
        raise type(exc)(f"{name}: {exc}") from None


def _check(fd: int, file_size: int, max_virtual_bytes: int) -> Qcow2Info:
    head = os.pread(fd, _V3_MIN_LENGTH, 0)
    if len(head) < 4 or head[:4] != QCOW2_MAGIC:
        raise Qcow2Rejected("not a qcow2 image (bad magic)")
    if len(head) < _V2_LENGTH:
        raise Qcow2Rejected(f"truncated: {file_size} bytes, shorter than a qcow2 header")
    (
        _magic,
        version,
        backing_offset,
        backing_size,
        cluster_bits,
        virtual_size,
        crypt_method,
        l1_size,
        l1_offset,
        refcount_offset,
        refcount_clusters,
        snapshots,
        _snapshots_offset,
    ) = _V2_HEADER.unpack_from(head)
    if version not in (2, 3):
        raise Qcow2Rejected(f"qcow2 version {version} is not supported (2 or 3)")
    incompatible, refcount_order, header_length, compression_type = 0, 4, _V2_LENGTH, 0
    if version == 3:
        if len(head) < _V3_MIN_LENGTH:
            raise Qcow2Rejected(f"truncated: {file_size} bytes, shorter than a qcow2 v3 header")
        incompatible, _compatible, _autoclear, refcount_order, header_length = (
            _V3_FIELDS.unpack_from(head, _V2_LENGTH)
        )
    if backing_offset != 0 or backing_size != 0:
        raise Qcow2Rejected("names a backing file (a DI must stand alone)")
    if not 9 <= cluster_bits <= 21:
        raise Qcow2Rejected(f"cluster bits {cluster_bits} out of range (9..21)")
    cluster_size = 1 << cluster_bits
    if file_size < cluster_size:
        raise Qcow2Rejected(
            f"truncated: {file_size} bytes, less than one {cluster_size}-byte cluster"
        )
    if version == 3 and not (
        _V3_MIN_LENGTH <= header_length <= cluster_size and header_length % 8 == 0
    ):
        raise Qcow2Rejected(f"header length {header_length} out of range")
    _refuse_features(incompatible)
    if crypt_method != 0:
        raise Qcow2Rejected(f"is encrypted (crypt method {crypt_method})")
    if snapshots != 0:
        raise Qcow2Rejected(f"holds {snapshots} internal snapshot(s) (convert it without them)")
    if refcount_order > 6:
        raise Qcow2Rejected(f"refcount order {refcount_order} out of range (0..6)")
    if virtual_size > max_virtual_bytes:
        raise Qcow2TooLarge(
            f"its virtual size ({virtual_size} bytes) is over the limit of "
            f"{max_virtual_bytes} bytes"
        )
    extended_l2 = bool(incompatible & _EXTENDED_L2)
    _check_tables(
        file_size=file_size,
        cluster_size=cluster_size,
        virtual_size=virtual_size,
        extended_l2=extended_l2,
        l1_size=l1_size,
        l1_offset=l1_offset,
        refcount_offset=refcount_offset,
        refcount_clusters=refcount_clusters,
    )
    if version == 3 and header_length > _V3_MIN_LENGTH:
        compression_type = os.pread(fd, 1, _V3_MIN_LENGTH)[0]
    if compression_type not in _COMPRESSION or (
        compression_type != 0 and not incompatible & _COMPRESSION_TYPE
    ):
        raise Qcow2Rejected(f"compression type {compression_type} is not supported")
    _check_extensions(os.pread(fd, cluster_size, 0), header_length)
    return Qcow2Info(
        version=version,
        virtual_size=virtual_size,
        cluster_size=cluster_size,
        file_size=file_size,
        compression=_COMPRESSION[compression_type],
        extended_l2=extended_l2,
    )


def _refuse_features(incompatible: int) -> None:
    unknown = incompatible & ~_KNOWN_INCOMPATIBLE
    if unknown:
        raise Qcow2Rejected(f"sets unknown incompatible feature bits {unknown:#x}")
    if incompatible & _EXTERNAL_DATA:
        raise Qcow2Rejected("names an external data file (its data must be inside the image)")
    if incompatible & _CORRUPT:
        raise Qcow2Rejected("is marked corrupt")
    if incompatible & _DIRTY:
        raise Qcow2Rejected("is marked dirty (not closed cleanly: run qemu-img check -r all)")


def _check_tables(
    *,
    file_size: int,
    cluster_size: int,
    virtual_size: int,
    extended_l2: bool,
    l1_size: int,
    l1_offset: int,
    refcount_offset: int,
    refcount_clusters: int,
) -> None:
    """The L1 table lies cluster-aligned inside the file and can map the whole virtual
    disk; the refcount table starts cluster-aligned inside the file (its last cluster
    may end past it: QEMU reads what is missing as zeros); both within QEMU's own
    bounds (32 MiB and 8 MiB)."""
    l2_entries = cluster_size // (16 if extended_l2 else 8)
    needed = -(-virtual_size // (cluster_size * l2_entries))
    if l1_size < needed:
        raise Qcow2Rejected(
            f"its L1 table ({l1_size} entries) cannot map its virtual size ({needed} needed)"
        )
    l1_length, refcount_length = l1_size * 8, refcount_clusters * cluster_size
    if l1_length > _MAX_L1_BYTES or refcount_length > _MAX_REFCOUNT_TABLE_BYTES:
        raise Qcow2Rejected(
            f"its L1 table ({l1_length} bytes) or refcount table ({refcount_length} bytes) "
            "is larger than QEMU allows"
        )
    if l1_length and (
        l1_offset == 0 or l1_offset % cluster_size or l1_offset + l1_length > file_size
    ):
        raise Qcow2Rejected(
            f"its L1 table ({l1_length} bytes at {l1_offset}) is not inside the "
            f"{file_size}-byte file (truncated or a lying header)"
        )  # (an empty disk, virtual size 0, has no L1 table)
    if (
        refcount_length == 0
        or refcount_offset == 0
        or refcount_offset % cluster_size
        or refcount_offset >= file_size
    ):
        raise Qcow2Rejected(
            f"its refcount table ({refcount_length} bytes at {refcount_offset}) is not in "
            f"the {file_size}-byte file (truncated or a lying header)"
        )


def _check_extensions(first_cluster: bytes, start: int) -> None:
    offset = start
    for _ in range(_MAX_EXTENSIONS):
        if offset + 8 > len(first_cluster):
            raise Qcow2Rejected("its header extensions run past the first cluster")
        kind, length = struct.unpack_from(">II", first_cluster, offset)
        if kind == _EXT_END:
            return
        offset += 8
        if offset + length > len(first_cluster):
            raise Qcow2Rejected(f"header extension {kind:#010x} runs past the first cluster")
        if kind in _EXT_REFUSED:
            raise Qcow2Rejected(_EXT_REFUSED[kind])
        offset += (length + 7) & ~7
    raise Qcow2Rejected(f"more than {_MAX_EXTENSIONS} header extensions")
