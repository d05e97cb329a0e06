"""The accelerator decision, from facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.accel import Accel, HostFacts, choose_accel, host_facts

REAL = HostFacts(kvm_device=True, kvm_usable=True, kvm_is_pvm=False)
PVM = HostFacts(kvm_device=True, kvm_usable=True, kvm_is_pvm=True)
NONE = HostFacts(kvm_device=False, kvm_usable=False, kvm_is_pvm=False)
LOCKED = HostFacts(kvm_device=True, kvm_usable=False, kvm_is_pvm=False)


@pytest.mark.parametrize(
    ("wanted", "facts", "chosen"),
    [
        ("auto", REAL, Accel.KVM),
        ("auto", PVM, Accel.TCG),
        ("auto", NONE, Accel.TCG),
        ("auto", LOCKED, Accel.TCG),
        (" AUTO ", REAL, Accel.KVM),
        ("tcg", REAL, Accel.TCG),
        ("tcg", NONE, Accel.TCG),
        ("kvm", REAL, Accel.KVM),
    ],
)
def test_choice(wanted: str, facts: HostFacts, chosen: Accel) -> None:
    assert choose_accel(wanted, facts) is chosen


@pytest.mark.parametrize(
    ("facts", "reason"),
    [(PVM, "PVM"), (NONE, "missing"), (LOCKED, "cannot be opened")],
)
def test_kvm_asked_for_where_there_is_none_is_refused(facts: HostFacts, reason: str) -> None:
    with pytest.raises(TerminalBackendError, match=reason):
        choose_accel("kvm", facts)


def test_an_unknown_word_is_refused() -> None:
    with pytest.raises(TerminalBackendError, match="expected auto, kvm or tcg"):
        choose_accel("hvf", REAL)


def test_host_facts_read_the_files(tmp_path: Path) -> None:
    modules = tmp_path / "module"
    (modules / "kvm_pvm").mkdir(parents=True)
    facts = host_facts(dev=tmp_path / "no-kvm", sys_module=modules)
    assert facts == HostFacts(kvm_device=False, kvm_usable=False, kvm_is_pvm=True)
    null = host_facts(dev=Path("/dev/null"), sys_module=tmp_path)  # a char device
    assert null == HostFacts(kvm_device=True, kvm_usable=True, kvm_is_pvm=False)


def test_this_machine_runs_tcg_under_auto() -> None:
    """/dev/kvm here is PVM (lab-kvm-pg-ldap.md): auto must not pick it."""
    facts = host_facts()
    if not facts.kvm_is_pvm:
        pytest.skip("this host has no PVM module")
    assert choose_accel("auto", facts) is Accel.TCG
