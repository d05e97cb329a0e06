"""A guest that needs no disk image: a 70-byte multiboot kernel QEMU boots directly.

It enables the ACPI power button (PM1a at 0x600, where SeaBIOS puts it on both ``pc``
and ``q35``), says ``QVD-STUB-READY`` on the serial console, polls for a press, and
then powers the machine off (SLP_EN with S5): ``system_powerdown`` ends it the way it
ends a real guest, so the backend's whole lifecycle runs against a real QEMU in about
a second. It polls (one host CPU while it
runs), so tests keep these guests short-lived.

``StubImageTools`` stands in for the DI checks and boot-file extraction (owned by the
kvmimage work) in these tests only: the DI is an empty qcow2, its boot files this
kernel and a one-byte initrd.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["READY", "StubBoot", "StubImageTools", "make_stub_di", "stub_kernel"]

_BASE = 0x100000
_PM = 0x600  # PM1a event block: +0 status, +2 enable, +4 control
_COM1 = 0x3F8
READY = b"QVD-STUB-READY\n"


def _out_dx(port: int) -> bytes:
    return b"\x66\xba" + struct.pack("<H", port)  # mov dx, port


def stub_kernel() -> bytes:
    magic, flags = 0x1BADB002, 1 << 16  # addresses in the header (flat binary)
    header = struct.pack(
        "<8I", magic, flags, -(magic + flags) & 0xFFFFFFFF, _BASE, _BASE, 0, 0, _BASE + 32
    )
    code = _out_dx(_PM + 2) + b"\x66\xb8\x00\x01" + b"\x66\xef"  # PWRBTN_EN
    code += _out_dx(_COM1)
    for char in READY:  # to the serial console: the button is armed
        code += b"\xb0" + bytes([char]) + b"\xee"  # mov al, char; out dx, al
    loop = _out_dx(_PM) + b"\x66\xed" + b"\x66\xa9\x00\x01" + b"\xf3\x90"  # in; test; pause
    code += loop + b"\x74" + struct.pack("<b", -(len(loop) + 2))  # jz loop
    code += _out_dx(_PM + 4) + b"\x66\xb8\x00\x20" + b"\x66\xef"  # SLP_EN, S5
    code += b"\xf4\xeb\xfd"  # hlt; jmp $-1
    return header + code


@dataclass(frozen=True, slots=True)
class StubBoot:
    kernel: Path
    initrd: Path
    cmdline: str


@dataclass
class StubImageTools:
    """Boot files of every image: the stub kernel; records what it was asked."""

    boot: StubBoot
    checked: list[Path] = field(default_factory=list)

    @classmethod
    def made_in(cls, directory: Path, cmdline: str = "console=ttyS0 quiet") -> StubImageTools:
        directory.mkdir(parents=True, exist_ok=True)
        kernel, initrd = directory / "vmlinuz", directory / "initrd.img"
        kernel.write_bytes(stub_kernel())
        initrd.write_bytes(b"\0")
        for path in (kernel, initrd):
            path.chmod(0o600)  # root's only: QEMU opens it before dropping privileges
        return cls(StubBoot(kernel, initrd, cmdline))

    def check(self, image: Path, *, max_virtual_bytes: int) -> None:
        self.checked.append(image)

    def boot_files(self, image: Path, cache_dir: Path) -> StubBoot:
        return self.boot


def make_stub_di(path: Path, size_mib: int = 16) -> Path:
    """An empty qcow2 standing for a DI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size_mib}M"], check=True
    )
    return path
