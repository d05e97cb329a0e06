"""What the policies ask for, as a pure function of what the database holds and the time.

``decide(policies, vms, now, warm=…)`` reads snapshots (no I/O, no clock) and returns
the actions of one pass, at most one per VM:

- ``idle_stop``     a running desktop whose user has been disconnected for ``minutes``
                    (since the later of the user's last change and the VM's start) → STOP
- ``idle_suspend``  the same desktop while an L7R still holds it (a connection that
                    did not let go) → SUSPEND (``user_cmd = abort``: the client is
                    dropped and nxagent suspends the X session; the VM keeps running)
- ``max_session``   a desktop whose user has been connected for ``minutes`` → DISCONNECT
- ``scheduled_start`` / ``scheduled_stop``: at ``at_minute`` on ``weekdays`` in
                    ``timezone``, once per occurrence: MARK_RUN (the claim of that
                    occurrence), then START / STOP of every desktop of the scope
- ``warm_pool``     the ``size`` best-ranked desktops of the users who usually connect
                    in the next ``minutes`` (``warm``: ranked by the store from the
                    session history) run → START of those that do not

A policy whose ``timezone`` is not a zone this system knows is skipped (the API
refuses such a zone; a row written around it must not stop the other policies).

Idle rules never touch a blocked VM (offline for maintenance), a VM a command is
pending for, a desktop whose user is connected or connecting, nor a desktop the warm
pool keeps right now. A VM in ``debugging`` or ``zombie`` is an administrator's and
is never touched at all.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "Action",
    "PolicyView",
    "Verb",
    "VmView",
    "WarmCandidate",
    "decide",
    "history_windows",
    "known_timezone",
    "latest_occurrence",
]

_IDLE_KINDS = ("idle_stop", "idle_suspend")
_ADMIN_STATES = ("debugging", "zombie")


class Verb(enum.Enum):
    MARK_RUN = "mark_run"  # claim a scheduled occurrence (once, whichever leader)
    START = "start"
    STOP = "stop"
    DISCONNECT = "disconnect"
    SUSPEND = "suspend"

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyView:
    """One row of ``policies`` as the decision reads it."""

    id: int
    tenant_id: int
    osf_id: int | None
    name: str
    kind: str
    enabled: bool = True
    minutes: int | None = None
    at_minute: int | None = None
    weekdays: int = 127
    timezone: str = "UTC"
    size: int | None = None
    last_run_at: dt.datetime | None = None
    creation_date: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class VmView:
    """One desktop's runtime as the decision reads it (``held``: an L7R holds it)."""

    vm_id: int
    tenant_id: int
    osf_id: int
    vm_state: str
    vm_cmd: str | None
    vm_state_ts: dt.datetime
    user_state: str
    user_state_ts: dt.datetime
    user_cmd: str | None = None
    blocked: bool = False
    held: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmCandidate:
    """A desktop whose user usually connects now: on ``days`` of the weeks looked at."""

    vm_id: int
    days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One thing to do. ``occurrence`` ties a scheduled action to its MARK_RUN: the
    store does the VM actions only if it could claim that occurrence."""

    verb: Verb
    policy_id: int
    policy_name: str
    vm_id: int | None = None
    occurrence: dt.datetime | None = None


# ---- time -------------------------------------------------------------------------------


def known_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this system knows."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _at(day: dt.date, minute: int, zone: ZoneInfo) -> dt.datetime:
    """``minute`` of ``day`` in ``zone`` as UTC (a wall time skipped by a DST change
    reads with the offset before it; a repeated one is its first)."""
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(dt.UTC)


def latest_occurrence(
    at_minute: int, weekdays: int, timezone: str, now: dt.datetime
) -> dt.datetime | None:
    """The last moment, at or before ``now``, that is ``at_minute`` on one of
    ``weekdays`` (Monday = 1 … Sunday = 64) in ``timezone``; None without weekdays."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    for back in range(8):
        day = today - dt.timedelta(days=back)
        if not weekdays & (1 << day.weekday()):
            continue
        when = _at(day, at_minute, zone)
        if when <= now:
            return when
    return None


def history_windows(
    now: dt.datetime, minutes: int, weeks: int, timezone: str
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The same weekday and wall-clock window ``[now, now + minutes)`` in each of the
    last ``weeks`` weeks, in ``timezone`` (so a DST change does not shift it), as UTC."""
    zone = ZoneInfo(timezone)
    wall = now.astimezone(zone).replace(tzinfo=None)
    windows = []
    for week in range(1, weeks + 1):
        start = (wall - dt.timedelta(weeks=week)).replace(tzinfo=zone).astimezone(dt.UTC)
        windows.append((start, start + dt.timedelta(minutes=minutes)))
    return windows


# ---- the decision -----------------------------------------------------------------------


def _in_scope(policy: PolicyView, vm: VmView) -> bool:
    if vm.tenant_id != policy.tenant_id:
        return False
    return policy.osf_id is None or vm.osf_id == policy.osf_id


def _idle_for(vm: VmView, now: dt.datetime) -> dt.timedelta:
    return now - max(vm.user_state_ts, vm.vm_state_ts)


def _idle_action(policy: PolicyView, vm: VmView, now: dt.datetime) -> Verb | None:
    if (
        vm.blocked
        or vm.vm_state != "running"
        or vm.vm_cmd is not None
        or vm.user_state != "disconnected"
        or policy.minutes is None
        or _idle_for(vm, now) < dt.timedelta(minutes=policy.minutes)
    ):
        return None
    if policy.kind == "idle_stop":
        return Verb.STOP
    return Verb.SUSPEND if vm.held and vm.user_cmd is None else None


def _session_action(policy: PolicyView, vm: VmView, now: dt.datetime) -> Verb | None:
    if (
        vm.user_state != "connected"
        or vm.user_cmd is not None
        or vm.vm_state in _ADMIN_STATES
        or policy.minutes is None
        or now - vm.user_state_ts < dt.timedelta(minutes=policy.minutes)
    ):
        return None
    return Verb.DISCONNECT


def _schedule_due(
    policy: PolicyView, now: dt.datetime, catchup: dt.timedelta
) -> dt.datetime | None:
    """The occurrence a scheduled policy must run now, if any: the latest one, after
    the policy was made and after its last run, missed by no more than ``catchup``."""
    if policy.at_minute is None:
        return None
    occurrence = latest_occurrence(policy.at_minute, policy.weekdays, policy.timezone, now)
    if occurrence is None or now - occurrence > catchup:
        return None
    if occurrence < policy.creation_date:
        return None
    if policy.last_run_at is not None and policy.last_run_at >= occurrence:
        return None
    return occurrence


def _scheduled_verb(kind: str, vm: VmView) -> Verb | None:
    if vm.vm_state in _ADMIN_STATES or vm.vm_cmd is not None:
        return None
    if kind == "scheduled_start":
        return Verb.START if vm.vm_state == "stopped" and not vm.blocked else None
    return Verb.STOP if vm.vm_state in ("starting", "running") else None


def _warm_wanted(
    policy: PolicyView, candidates: Sequence[WarmCandidate], vms: Mapping[int, VmView]
) -> list[VmView]:
    """The desktops the pool keeps: the ``size`` best-ranked usable candidates."""
    size = policy.size or 0
    usable = [
        vms[c.vm_id]
        for c in candidates
        if c.vm_id in vms
        and _in_scope(policy, vms[c.vm_id])
        and not vms[c.vm_id].blocked
        and vms[c.vm_id].vm_state not in _ADMIN_STATES
    ]
    return usable[:size]


def decide(
    policies: Iterable[PolicyView],
    vms: Iterable[VmView],
    now: dt.datetime,
    *,
    warm: Mapping[int, Sequence[WarmCandidate]] | None = None,
    catchup: dt.timedelta = dt.timedelta(minutes=60),
) -> list[Action]:
    """The actions of one pass (see the module docstring), at most one per VM."""
    # a row with a zone this system does not know (written around the API, or a zone a
    # tzdata update removed) is skipped: it must not stop every other policy's pass
    active = [p for p in policies if p.enabled and known_timezone(p.timezone)]
    by_id = {vm.vm_id: vm for vm in vms}
    actions: list[Action] = []
    taken: set[int] = set()

    def add(policy: PolicyView, verb: Verb, vm_id: int, occurrence: dt.datetime | None) -> None:
        if vm_id in taken:
            return
        taken.add(vm_id)
        actions.append(
            Action(verb=verb, policy_id=policy.id, policy_name=policy.name, vm_id=vm_id,
                   occurrence=occurrence)
        )  # fmt: skip

    # scheduled runs first: once per occurrence, they win over the rules below
    for policy in sorted(active, key=lambda p: p.id):
        if policy.kind not in ("scheduled_start", "scheduled_stop"):
            continue
        occurrence = _schedule_due(policy, now, catchup)
        if occurrence is None:
            continue
        actions.append(
            Action(verb=Verb.MARK_RUN, policy_id=policy.id, policy_name=policy.name,
                   occurrence=occurrence)
        )  # fmt: skip
        for vm in by_id.values():
            if _in_scope(policy, vm) and (verb := _scheduled_verb(policy.kind, vm)) is not None:
                add(policy, verb, vm.vm_id, occurrence)

    # the warm pool: what it keeps is safe from the idle rules
    kept: set[int] = set()
    warm_starts: list[tuple[PolicyView, VmView]] = []
    for policy in sorted(active, key=lambda p: p.id):
        if policy.kind != "warm_pool":
            continue
        for vm in _warm_wanted(policy, (warm or {}).get(policy.id, ()), by_id):
            kept.add(vm.vm_id)
            if vm.vm_state == "stopped" and vm.vm_cmd is None:
                warm_starts.append((policy, vm))

    for policy in sorted(active, key=lambda p: p.id):
        if policy.kind == "max_session":
            for vm in by_id.values():
                if _in_scope(policy, vm) and (verb := _session_action(policy, vm, now)):
                    add(policy, verb, vm.vm_id, None)
        elif policy.kind in _IDLE_KINDS:
            for vm in by_id.values():
                if vm.vm_id in kept or not _in_scope(policy, vm):
                    continue
                if (verb := _idle_action(policy, vm, now)) is not None:
                    add(policy, verb, vm.vm_id, None)

    for policy, vm in warm_starts:
        add(policy, Verb.START, vm.vm_id, None)
    return actions
