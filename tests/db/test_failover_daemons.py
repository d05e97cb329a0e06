"""A real failover under a running node and the real API: two PostgreSQL clusters in
streaming replication, the HKD (fake backend in-process) and the API both on the
two-host target. The primary crashes and the standby is promoted while a desktop
runs: the desktop keeps running (no fence), the node and the API answer again on the
new primary, and a ``vm_start`` / ``vm_stop`` asked around the failover is carried
out exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.db.failover_stage import Stage, fail_over_and_time, failover_stage, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def stage() -> Iterator[Stage]:
    with failover_stage() as made:
        yield made


def test_node_and_api_carry_on_and_commands_run_once(stage: Stage) -> None:
    vm_a, vm_b = stage.world.vms["A"], stage.world.vms["B"]
    # before: a desktop started through the API runs on the node
    assert stage.act("vm_start", filters={"id": vm_a})["status"] == 0
    wait_for(lambda: stage.vm_state(vm_a) == "running")

    figures = fail_over_and_time(stage)
    print(f"failover figures: {figures}")  # the report's numbers (no speed assertion)

    # the desktop ran through it: never fenced, never killed, still running
    assert not stage.hkd.fenced
    assert stage.hkd.fencer.fence_count == 0
    assert stage.backend.vms[vm_a].running
    assert stage.calls("kill", vm_a) == 0

    # after: a start and a stop through the API, each carried out once
    assert stage.act("vm_start", filters={"id": vm_b})["status"] == 0
    assert stage.act("vm_stop", filters={"id": vm_a})["status"] == 0
    wait_for(lambda: stage.vm_state(vm_b) == "running")
    wait_for(lambda: stage.vm_state(vm_a) == "stopped")
    assert stage.calls("start", vm_a) == 1
    assert stage.calls("start", vm_b) == 1
    assert stage.calls("stop", vm_a) == 1


def test_a_command_asked_during_the_failover_runs_once(stage: Stage) -> None:
    """``vm_start`` sent while no primary exists: the API retries it (its connection
    was lost before COMMIT, so nothing was made) until the new primary takes it, and
    the node, whose LISTEN is re-made on the new primary, starts the VM once."""
    vm_b = stage.world.vms["B"]
    answers: list[dict[str, Any]] = []
    stage.pair.stop_primary("immediate")  # no primary now: the request must wait
    asking = threading.Thread(
        target=lambda: answers.append(stage.act("vm_start", filters={"id": vm_b}))
    )
    asking.start()
    asking.join(1.0)
    assert asking.is_alive()  # waiting for a primary, not failed
    stage.pair.promote()
    asking.join(60)
    assert answers == [answers[0]]
    assert answers[0]["status"] == 0, answers
    wait_for(lambda: stage.vm_state(vm_b) == "running")
    wait_for(lambda: stage.calls("start", vm_b) >= 1)
    assert stage.calls("start", vm_b) == 1
    assert not stage.hkd.fenced
