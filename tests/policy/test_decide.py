"""``decide``: what each kind of policy asks for, from snapshots and a given time."""

from __future__ import annotations

import datetime as dt

import pytest

from qvd.policy.decide import (
    Action,
    PolicyView,
    Verb,
    VmView,
    WarmCandidate,
    decide,
    history_windows,
    known_timezone,
    latest_occurrence,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday
LONG_AGO = NOW - dt.timedelta(days=30)


def _policy(kind: str, pid: int = 1, **kw: object) -> PolicyView:
    fields: dict[str, object] = {
        "id": pid, "tenant_id": 1, "osf_id": None, "name": f"p{pid}", "kind": kind,
        "creation_date": LONG_AGO,
    }  # fmt: skip
    fields.update(kw)
    return PolicyView(**fields)  # type: ignore[arg-type]


def _vm(vm_id: int, **kw: object) -> VmView:
    fields: dict[str, object] = {
        "vm_id": vm_id, "tenant_id": 1, "osf_id": 10, "vm_state": "running", "vm_cmd": None,
        "vm_state_ts": LONG_AGO, "user_state": "disconnected", "user_state_ts": LONG_AGO,
    }  # fmt: skip
    fields.update(kw)
    return VmView(**fields)  # type: ignore[arg-type]


def _verbs(actions: list[Action]) -> list[tuple[Verb, int | None]]:
    return [(a.verb, a.vm_id) for a in actions]


def _ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


# ---- idle rules ---------------------------------------------------------------------------


def test_idle_stop_after_minutes_only() -> None:
    policy = _policy("idle_stop", minutes=30)
    vms = [_vm(1, user_state_ts=_ago(31)), _vm(2, user_state_ts=_ago(29))]
    assert _verbs(decide([policy], vms, NOW)) == [(Verb.STOP, 1)]


def test_idle_counts_from_the_vm_start_too() -> None:
    """A desktop started 5 minutes ago (warm pool, schedule) is not idle for 30 yet."""
    policy = _policy("idle_stop", minutes=30)
    vm = _vm(1, user_state_ts=_ago(600), vm_state_ts=_ago(5))
    assert decide([policy], [vm], NOW) == []


@pytest.mark.parametrize(
    "change",
    [
        {"blocked": True},
        {"user_state": "connected"},
        {"user_state": "connecting"},
        {"vm_cmd": "stop"},
        {"vm_state": "starting"},
        {"vm_state": "debugging"},
        {"vm_state": "stopped"},
        {"tenant_id": 2},
    ],
)
def test_idle_stop_never_touches(change: dict[str, object]) -> None:
    policy = _policy("idle_stop", minutes=1)
    assert decide([policy], [_vm(1, **change)], NOW) == []


def test_idle_stop_of_one_osf() -> None:
    policy = _policy("idle_stop", minutes=1, osf_id=11)
    vms = [_vm(1, osf_id=10), _vm(2, osf_id=11)]
    assert _verbs(decide([policy], vms, NOW)) == [(Verb.STOP, 2)]


def test_disabled_policy_does_nothing() -> None:
    assert decide([_policy("idle_stop", minutes=1, enabled=False)], [_vm(1)], NOW) == []


def test_idle_suspend_drops_a_lingering_hold() -> None:
    policy = _policy("idle_suspend", minutes=10)
    vms = [_vm(1, held=True), _vm(2), _vm(3, held=True, user_cmd="abort")]
    assert _verbs(decide([policy], vms, NOW)) == [(Verb.SUSPEND, 1)]


# ---- maximum session ------------------------------------------------------------------------


def test_max_session_disconnects_long_connections() -> None:
    policy = _policy("max_session", minutes=480)
    vms = [
        _vm(1, user_state="connected", user_state_ts=_ago(481)),
        _vm(2, user_state="connected", user_state_ts=_ago(100)),
        _vm(3, user_state="disconnected", user_state_ts=_ago(900)),
        _vm(4, user_state="connected", user_state_ts=_ago(900), user_cmd="abort"),
    ]
    assert _verbs(decide([policy], vms, NOW)) == [(Verb.DISCONNECT, 1)]


# ---- schedules ------------------------------------------------------------------------------


def test_latest_occurrence_in_a_time_zone() -> None:
    # 08:00 in Madrid (UTC+1 in December) is 07:00 UTC
    occ = latest_occurrence(8 * 60, 127, "Europe/Madrid", NOW)
    assert occ == dt.datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    # 10:00 in Madrid is now exactly: it counts; 11:00 is to come, so yesterday's
    occ = latest_occurrence(10 * 60, 127, "Europe/Madrid", NOW)
    assert occ == NOW
    occ = latest_occurrence(11 * 60, 127, "Europe/Madrid", NOW)
    assert occ == dt.datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_latest_occurrence_weekdays_only() -> None:
    weekdays = 0b0011111  # Monday to Friday
    sunday = dt.datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    occ = latest_occurrence(8 * 60, weekdays, "UTC", sunday)
    assert occ == dt.datetime(2026, 12, 4, 8, 0, tzinfo=UTC)  # Friday
    assert latest_occurrence(8 * 60, 0, "UTC", sunday) is None


def test_latest_occurrence_across_dst() -> None:
    # New York: 2026-03-08 switches to EDT (UTC-4); 07:30 is 11:30 UTC that day
    after = dt.datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert latest_occurrence(450, 127, "America/New_York", after) == dt.datetime(
        2026, 3, 8, 11, 30, tzinfo=UTC
    )
    before = dt.datetime(2026, 3, 7, 13, 0, tzinfo=UTC)
    assert latest_occurrence(450, 127, "America/New_York", before) == dt.datetime(
        2026, 3, 7, 12, 30, tzinfo=UTC
    )


def test_scheduled_start_runs_once_per_occurrence() -> None:
    policy = _policy("scheduled_start", at_minute=8 * 60 + 30, timezone="UTC")
    vms = [_vm(1, vm_state="stopped"), _vm(2, vm_state="running"), _vm(3, vm_state="stopped",
           blocked=True)]  # fmt: skip
    at = dt.datetime(2026, 12, 7, 8, 31, tzinfo=UTC)
    actions = decide([policy], vms, at)
    occurrence = dt.datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
    assert _verbs(actions) == [(Verb.MARK_RUN, None), (Verb.START, 1)]
    assert {a.occurrence for a in actions} == {occurrence}
    # once it ran (last_run_at = the occurrence), the same occurrence is not due again
    ran = _policy("scheduled_start", at_minute=8 * 60 + 30, last_run_at=occurrence)
    assert decide([ran], vms, at + dt.timedelta(minutes=5)) == []
    # the next day's occurrence is
    next_day = decide([ran], vms, at + dt.timedelta(days=1))
    assert _verbs(next_day) == [(Verb.MARK_RUN, None), (Verb.START, 1)]


def test_scheduled_start_not_before_the_policy_existed_nor_too_late() -> None:
    at = dt.datetime(2026, 12, 7, 8, 31, tzinfo=UTC)
    new = _policy("scheduled_start", at_minute=8 * 60, creation_date=at - dt.timedelta(minutes=5))
    assert decide([new], [_vm(1, vm_state="stopped")], at) == []
    old = _policy("scheduled_start", at_minute=8 * 60)
    late = dt.datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert decide([old], [_vm(1, vm_state="stopped")], late) == []
    caught_up = decide([old], [_vm(1, vm_state="stopped")], late, catchup=dt.timedelta(minutes=180))
    assert _verbs(caught_up) == [(Verb.MARK_RUN, None), (Verb.START, 1)]


def test_scheduled_stop_in_its_time_zone_and_weekdays() -> None:
    # 19:00 in Tokyo (UTC+9) is 10:00 UTC; Monday only
    policy = _policy("scheduled_stop", at_minute=19 * 60, timezone="Asia/Tokyo", weekdays=1)
    vms = [_vm(1, user_state="connected"), _vm(2, vm_state="stopped"), _vm(3, vm_cmd="stop")]
    monday = dt.datetime(2026, 12, 7, 10, 1, tzinfo=UTC)
    assert _verbs(decide([policy], vms, monday)) == [(Verb.MARK_RUN, None), (Verb.STOP, 1)]
    tuesday = monday + dt.timedelta(days=1)
    assert decide([policy], vms, tuesday) == []


def test_scheduled_run_wins_over_idle_rules() -> None:
    at = dt.datetime(2026, 12, 7, 8, 1, tzinfo=UTC)
    stop = _policy("scheduled_stop", pid=1, at_minute=8 * 60)
    idle = _policy("idle_stop", pid=2, minutes=1)
    actions = decide([idle, stop], [_vm(1)], at)
    assert [(a.verb, a.vm_id, a.policy_id) for a in actions] == [
        (Verb.MARK_RUN, None, 1),
        (Verb.STOP, 1, 1),
    ]


# ---- warm pool ------------------------------------------------------------------------------


def test_warm_pool_starts_the_best_ranked_up_to_size() -> None:
    policy = _policy("warm_pool", minutes=30, size=2)
    vms = [_vm(i, vm_state="stopped") for i in (1, 2, 3)]
    warm = {1: [WarmCandidate(vm_id=3, days=4), WarmCandidate(vm_id=1, days=3),
                WarmCandidate(vm_id=2, days=2)]}  # fmt: skip
    assert _verbs(decide([policy], vms, NOW, warm=warm)) == [(Verb.START, 3), (Verb.START, 1)]


def test_warm_pool_counts_what_runs_already_and_skips_blocked() -> None:
    policy = _policy("warm_pool", minutes=30, size=2)
    vms = [_vm(1), _vm(2, vm_state="stopped", blocked=True), _vm(3, vm_state="stopped")]
    warm = {1: [WarmCandidate(vm_id=v, days=3) for v in (1, 2, 3)]}
    assert _verbs(decide([policy], vms, NOW, warm=warm)) == [(Verb.START, 3)]


def test_warm_pool_protects_its_desktops_from_idle_stop() -> None:
    pool = _policy("warm_pool", pid=1, minutes=30, size=1)
    idle = _policy("idle_stop", pid=2, minutes=1)
    vms = [_vm(1), _vm(2)]
    warm = {1: [WarmCandidate(vm_id=1, days=3)]}
    assert _verbs(decide([pool, idle], vms, NOW, warm=warm)) == [(Verb.STOP, 2)]


def test_history_windows_keep_the_wall_clock_across_dst() -> None:
    # Monday 2026-11-02 09:00 New York (EST, UTC-5) = 14:00 UTC; a week before was EDT
    now = dt.datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    windows = history_windows(now, 30, 2, "America/New_York")
    assert windows[0] == (
        dt.datetime(2026, 10, 26, 13, 0, tzinfo=UTC),
        dt.datetime(2026, 10, 26, 13, 30, tzinfo=UTC),
    )
    assert windows[1][0] == dt.datetime(2026, 10, 19, 13, 0, tzinfo=UTC)


def test_one_action_per_vm_and_a_second_pass_after_acting_does_nothing() -> None:
    stop = _policy("idle_stop", pid=1, minutes=1)
    again = _policy("idle_stop", pid=2, minutes=1)
    assert _verbs(decide([stop, again], [_vm(1)], NOW)) == [(Verb.STOP, 1)]
    assert decide([stop, again], [_vm(1, vm_cmd="stop")], NOW) == []


def test_known_timezone() -> None:
    assert known_timezone("Europe/Madrid")
    assert known_timezone("UTC")
    for bad in ("Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "Europe/../UTC"):
        assert not known_timezone(bad)


def test_a_policy_with_an_unknown_zone_is_skipped_not_fatal() -> None:
    broken = _policy("scheduled_stop", pid=1, at_minute=8 * 60, timezone="Nowhere/Void")
    idle = _policy("idle_stop", pid=2, minutes=1)
    at = dt.datetime(2026, 12, 7, 8, 1, tzinfo=UTC)
    assert _verbs(decide([broken, idle], [_vm(1)], at)) == [(Verb.STOP, 1)]
