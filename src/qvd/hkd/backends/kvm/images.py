"""What the backend asks of a DI file: that it is a sound qcow2, and its boot files.

The checks themselves live elsewhere (``qvd.imagefile.qcow2.check_qcow2`` reads the
qcow2 structure, ``bootfiles.boot_files`` takes the kernel, initrd and kernel
arguments out of it without mounting it); :class:`ImageTools` is the seam the backend
calls them through, so a test can hand in a stub guest's. Results are kept per file version (inode,
size, mtime): a DI is checked once, not at every start.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.bootfiles import boot_files
from qvd.imagefile import ImageRejected, check_qcow2, is_qcow2

__all__ = ["BootFiles", "CheckedImages", "ImageTools", "RealImageTools"]


class BootFiles(Protocol):
    @property
    def kernel(self) -> Path: ...
    @property
    def initrd(self) -> Path: ...
    @property
    def cmdline(self) -> str: ...


class ImageTools(Protocol):
    def check(self, image: Path, *, max_virtual_bytes: int) -> None:
        """Raise TerminalBackendError when ``image`` is not a qcow2 fit to run."""

    def boot_files(self, image: Path, cache_dir: Path) -> BootFiles: ...


class RealImageTools:
    """The project's own checks."""

    def check(self, image: Path, *, max_virtual_bytes: int) -> None:
        try:
            check_qcow2(image, max_virtual_bytes=max_virtual_bytes)
        except ImageRejected as exc:
            raise TerminalBackendError(f"disk image {image.name} refused: {exc}") from None

    def boot_files(self, image: Path, cache_dir: Path) -> BootFiles:
        return boot_files(image, cache_dir)


@dataclass(frozen=True, slots=True)
class _Version:
    ino: int
    size: int
    mtime_ns: int


class CheckedImages:
    """DI files checked once per version, with their boot files."""

    def __init__(self, tools: ImageTools, cache_dir: Path, max_virtual_bytes: int) -> None:
        self.tools = tools
        self.cache_dir = cache_dir
        self.max_virtual_bytes = max_virtual_bytes
        self._lock = threading.Lock()
        self._known: dict[Path, tuple[_Version, BootFiles]] = {}

    def boot_files(self, image: Path) -> BootFiles:
        """``image`` checked (qcow2, sound) and its boot files."""
        try:
            st = image.stat()
        except FileNotFoundError:
            raise TerminalBackendError(f"disk image file {image} is missing on this node") from None
        version = _Version(st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._known.get(image)
            if known is not None and known[0] == version:
                return known[1]
            if not image.is_file() or not is_qcow2(image):
                raise TerminalBackendError(
                    f"disk image {image.name} is not a qcow2 image: a KVM node runs qcow2 "
                    "DIs only (this looks like an LXC tarball)"
                )
            self.tools.check(image, max_virtual_bytes=self.max_virtual_bytes)
            files = self.tools.boot_files(image, self.cache_dir)
            self._known[image] = (version, files)
            return files
