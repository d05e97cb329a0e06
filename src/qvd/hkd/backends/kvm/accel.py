"""Which accelerator QEMU uses: hardware KVM or TCG (software emulation).

The choice is a pure function of the configured wish and a few facts of the host, so it
is tested with facts; ``host_facts`` reads them. ``auto`` picks KVM only when
``/dev/kvm`` exists and this process may open it read-write, and the module behind it
is not PVM (``/sys/module/kvm_pvm``): PVM is a software KVM that initialises fine but
cannot run a stock kernel (the guest hangs, QEMU never falls back), so it counts as no
KVM at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from qvd.hkd.backends.base import TerminalBackendError

__all__ = ["Accel", "HostFacts", "choose_accel", "host_facts"]


class Accel(Enum):
    KVM = "kvm"
    TCG = "tcg"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    kvm_device: bool  # /dev/kvm exists and is a character device
    kvm_usable: bool  # this process may open it read-write
    kvm_is_pvm: bool  # the kvm_pvm module serves it


def choose_accel(wanted: str, facts: HostFacts) -> Accel:
    """The accelerator for ``vm.kvm.accel`` = ``wanted`` on a host with ``facts``.
    ``kvm`` asked for explicitly is refused when the host cannot give it (a clear
    error at start, not a guest that hangs)."""
    word = wanted.strip().lower()
    has_kvm = facts.kvm_device and facts.kvm_usable and not facts.kvm_is_pvm
    if word == "tcg":
        return Accel.TCG
    if word == "auto":
        return Accel.KVM if has_kvm else Accel.TCG
    if word == "kvm":
        if has_kvm:
            return Accel.KVM
        why = (
            "/dev/kvm is missing"
            if not facts.kvm_device
            else "/dev/kvm cannot be opened"
            if not facts.kvm_usable
            else "/dev/kvm is PVM (kvm_pvm), which cannot run stock kernels"
        )
        raise TerminalBackendError(f"vm.kvm.accel = kvm, but {why}: use auto or tcg")
    raise TerminalBackendError(f"vm.kvm.accel = {wanted!r}: expected auto, kvm or tcg")


def host_facts(dev: Path = Path("/dev/kvm"), sys_module: Path = Path("/sys/module")) -> HostFacts:
    """The facts of this host, read now."""
    try:
        is_device = dev.is_char_device()
    except OSError:
        is_device = False
    usable = False
    if is_device:
        try:
            fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            usable = False
        else:
            os.close(fd)
            usable = True
    return HostFacts(
        kvm_device=is_device,
        kvm_usable=usable,
        kvm_is_pvm=(sys_module / "kvm_pvm").exists(),
    )
