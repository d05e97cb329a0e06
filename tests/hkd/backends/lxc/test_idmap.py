"""Id ranges of the desktops and root's subordinate ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.hkd.backends.lxc.idmap import RANGE_SIZE, IdPlan, IdRange, ensure_subordinate_ids


def test_each_vm_gets_a_stable_range_of_its_own() -> None:
    plan = IdPlan(1_000_000, 4096)
    assert plan.for_vm(10000) == IdRange(1_000_000 + (10000 % 4096) * RANGE_SIZE)
    assert plan.for_vm(10000) == plan.for_vm(10000)
    starts = {plan.for_vm(v).start for v in range(10000, 10000 + 4096)}
    assert len(starts) == 4096
    assert all(s >= 1_000_000 and s + RANGE_SIZE <= 1_000_000 + plan.count for s in starts)
    assert IdPlan(1_000_000, 1).for_vm(12345) == IdRange(1_000_000)


@pytest.mark.parametrize(("start", "ranges"), [(0, 1), (65535, 1), (10**6, 0), (2**32 - 65536, 2)])
def test_unsafe_plans_are_refused(start: int, ranges: int) -> None:
    with pytest.raises(ValueError, match=r"vm\.lxc\.idmap"):
        IdPlan(start, ranges)


def test_subordinate_ids_are_added_once(tmp_path: Path) -> None:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:100000:65536")  # no final newline
    plan = IdPlan(1_000_000, 16)
    files = (subuid, subgid)
    assert ensure_subordinate_ids(plan, files, newuidmap=True) == [subuid, subgid]
    assert ensure_subordinate_ids(plan, files, newuidmap=True) == []
    assert subuid.read_text() == "alice:100000:65536\nroot:1000000:1048576\n"
    assert subgid.read_text() == "root:1000000:1048576\n"


def test_a_wider_existing_entry_is_enough_and_nothing_without_newuidmap(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("root:100000:100000000\n")
    assert ensure_subordinate_ids(IdPlan(1_000_000, 16), (subuid,), newuidmap=True) == []
    other = tmp_path / "other"
    assert ensure_subordinate_ids(IdPlan(1_000_000, 16), (other,), newuidmap=False) == []
    assert not other.exists()
