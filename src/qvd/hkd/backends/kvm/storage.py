"""Disk files of KVM VMs (reference §2.5/§2.6), made with ``qemu-img``.

- ``images/<file>``: the DI, a qcow2 checked before use; never written.
- ``overlays/<di_id>-<vm_id>-overlay.qcow2``: the VM's root, a qcow2 backed by the DI
  (``-F qcow2`` always: QEMU never probes a format). Made anew at each start unless the
  root persists; then kept while the DI is the same.
- ``homes/<vm_id>-data.qcow2``: the persistent home of ``size_mib``, made empty once
  (the VMA formats it on first use), grown when the size grows, never shrunk.

Every file is 0600 root and every directory 0700 root: QEMU opens them before it drops
its privileges, nothing else needs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from qvd.hkd.backends.base import BackendError, TerminalBackendError
from qvd.hkd.backends.hostfs import private_dir

__all__ = ["Storage", "qemu_img"]

_OVERLAY = re.compile(r"(\d+)-(\d+)-overlay\.qcow2")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_MIB = 1 << 20


def qemu_img(*args: str, timeout: float = 120) -> str:
    try:
        done = subprocess.run(
            ["qemu-img", *args], capture_output=True, text=True, env=_ENV,
            timeout=timeout, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise TerminalBackendError(
            "qemu-img is not installed (apt-get install qemu-utils)"
        ) from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"qemu-img {args[0]}: no answer after {timeout:g} s") from None
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
        raise BackendError(f"qemu-img {args[0]}: {reason}")
    return done.stdout


def _private_file(path: Path) -> None:
    st = path.lstat()
    if not path.is_file() or path.is_symlink():
        raise TerminalBackendError(f"{path} is not a regular file")
    if st.st_uid != 0 or st.st_gid != 0:
        os.chown(path, 0, 0)
    path.chmod(0o600)


@dataclass(frozen=True, slots=True)
class Storage:
    images: Path
    overlays: Path
    homes: Path

    def secure(self) -> None:
        for parent in (self.images, self.overlays, self.homes):
            private_dir(parent)

    # ---- overlays -----------------------------------------------------------------------
    def overlay(self, di_id: int, vm_id: int) -> Path:
        return self.overlays / f"{di_id}-{vm_id}-overlay.qcow2"

    def overlays_of(self, vm_id: int) -> list[Path]:
        if not self.overlays.is_dir():
            return []
        return sorted(
            p for p in self.overlays.iterdir()
            if (m := _OVERLAY.fullmatch(p.name)) and int(m.group(2)) == vm_id
        )  # fmt: skip

    def ensure_overlay(self, image: Path, di_id: int, vm_id: int, *, persistent: bool) -> Path:
        """The VM's root overlay on ``image``: kept when ``persistent`` (and on this
        DI), made anew otherwise; overlays on another DI go."""
        wanted = self.overlay(di_id, vm_id)
        for old in self.overlays_of(vm_id):
            if old != wanted or not persistent:
                old.unlink(missing_ok=True)
        if wanted.exists():
            _private_file(wanted)
            return wanted
        tmp = wanted.with_name(f".{wanted.name}.new")
        tmp.unlink(missing_ok=True)
        qemu_img(
            "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.absolute()), str(tmp)
        )
        _private_file(tmp)
        tmp.rename(wanted)
        return wanted

    def discard_overlays(self, vm_id: int) -> None:
        for old in self.overlays_of(vm_id):
            old.unlink(missing_ok=True)

    # ---- homes --------------------------------------------------------------------------
    def home(self, vm_id: int) -> Path:
        return self.homes / f"{vm_id}-data.qcow2"

    def ensure_home(self, vm_id: int, size_mib: int) -> Path:
        """The VM's home disk of at least ``size_mib`` MiB (made empty, or grown)."""
        if size_mib <= 0:
            raise TerminalBackendError(f"VM {vm_id}: a home of {size_mib} MiB")
        home = self.home(vm_id)
        if not home.exists() and not home.is_symlink():
            tmp = home.with_name(f".{home.name}.new")
            tmp.unlink(missing_ok=True)
            qemu_img("create", "-q", "-f", "qcow2", str(tmp), f"{size_mib}M")
            _private_file(tmp)
            tmp.rename(home)
            return home
        _private_file(home)
        if virtual_size(home) < size_mib * _MIB:
            qemu_img("resize", "-q", "-f", "qcow2", str(home), f"{size_mib}M")
        return home


def virtual_size(path: Path) -> int:
    """The virtual size of a qcow2 file in bytes (its format given, never probed)."""
    info = json.loads(qemu_img("info", "--output=json", "-f", "qcow2", str(path)))
    size = info.get("virtual-size") if isinstance(info, dict) else None
    if not isinstance(size, int):
        raise BackendError(f"qemu-img info {path.name}: no virtual size")
    return size
