"""The policy leader's reads and writes: snapshots for ``decide`` and the actions it
returns, done only through the requests for change everybody uses (``vm_cmd`` by the
rules of ``qvd.db.vmrules``, ``user_cmd = abort``; the database's triggers send the
NOTIFY). Nothing here talks to a node.

Every acting transaction first proves that this leader's session still holds the
lock (``leader.holds_lock_sql``): a leader that lost it acts no more. A scheduled
occurrence is claimed (``last_run_at``) in the same transaction as its commands, so
it runs once whichever leader sees it, and not at all if the transaction fails.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.orm import Session

from qvd.db import vmrules
from qvd.db.loadbalancer import NoHostAvailable, Weights
from qvd.policy.decide import (
    Action,
    PolicyView,
    Verb,
    VmView,
    WarmCandidate,
    history_windows,
    known_timezone,
)
from qvd.policy.leader import LOCK_KEY

__all__ = ["ApplyReport", "LeadershipLost", "apply", "read_policies", "read_vms", "read_warm"]

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    """The leader's lock is gone: stop acting."""


@dataclass(slots=True)
class ApplyReport:
    done: int = 0
    skipped: int = 0
    failed: int = 0


# ---- reads --------------------------------------------------------------------------------


def read_policies(conn: Connection) -> list[PolicyView]:
    rows = conn.execute(
        text(
            "SELECT id, tenant_id, osf_id, name, kind, enabled, minutes, at_minute, weekdays,"
            "       timezone, size, last_run_at, creation_date "
            "  FROM policies WHERE enabled ORDER BY id"
        )
    )
    return [
        PolicyView(id=r[0], tenant_id=r[1], osf_id=r[2], name=r[3], kind=r[4], enabled=r[5],
                   minutes=r[6], at_minute=r[7], weekdays=r[8], timezone=r[9], size=r[10],
                   last_run_at=r[11], creation_date=r[12])
        for r in rows
    ]  # fmt: skip


def read_vms(conn: Connection, tenant_ids: Iterable[int]) -> list[VmView]:
    """The runtime of every desktop of those tenants."""
    tenants = sorted(set(tenant_ids))
    if not tenants:
        return []
    stmt = text(
        "SELECT r.vm_id, u.tenant_id, v.osf_id, r.vm_state, r.vm_cmd, r.vm_state_ts,"
        "       r.user_state, r.user_state_ts, r.user_cmd, r.blocked,"
        "       r.l7r_host_id IS NOT NULL "
        "  FROM vm_runtimes r JOIN vms v ON v.id = r.vm_id JOIN users u ON u.id = v.user_id "
        " WHERE u.tenant_id IN :tenants"
    ).bindparams(bindparam("tenants", expanding=True))
    return [
        VmView(vm_id=r[0], tenant_id=r[1], osf_id=r[2], vm_state=r[3], vm_cmd=r[4],
               vm_state_ts=r[5], user_state=r[6], user_state_ts=r[7], user_cmd=r[8],
               blocked=r[9], held=r[10])
        for r in conn.execute(stmt, {"tenants": tenants})
    ]  # fmt: skip


def read_warm(
    conn: Connection, policy: PolicyView, now: dt.datetime, *, weeks: int, min_days: int
) -> list[WarmCandidate]:
    """The desktops of the policy's scope whose users connected (connect or takeover,
    result ok) in this weekday's window ``[now, now + minutes)`` on at least
    ``min_days`` of the last ``weeks`` weeks, most regular (then most recent) first."""
    if not policy.size or not known_timezone(policy.timezone):
        return []
    windows = history_windows(now, policy.minutes or 0, weeks, policy.timezone)
    if not windows:
        return []
    values = ", ".join(f"({i}, :s{i}, :e{i})" for i in range(len(windows)))
    params: dict[str, Any] = {"tenant": policy.tenant_id, "osf": policy.osf_id, "min": min_days}
    for i, (start, end) in enumerate(windows):
        params[f"s{i}"], params[f"e{i}"] = start, end
    rows = conn.execute(
        text(
            "SELECT h.vm_id, count(DISTINCT w.n) AS days"
            f"  FROM (VALUES {values}) AS w(n, s, e)"
            "  JOIN session_history h ON h.started_at >= w.s::timestamptz"
            "                        AND h.started_at < w.e::timestamptz"
            "  JOIN vms v ON v.id = h.vm_id JOIN users u ON u.id = v.user_id"
            " WHERE h.kind IN ('connect', 'takeover') AND h.result = 'ok'"
            "   AND u.tenant_id = :tenant"
            "   AND (CAST(:osf AS integer) IS NULL OR v.osf_id = :osf)"
            " GROUP BY h.vm_id HAVING count(DISTINCT w.n) >= :min"
            " ORDER BY days DESC, max(h.started_at) DESC, h.vm_id"
        ),
        params,
    )
    return [WarmCandidate(vm_id=r[0], days=r[1]) for r in rows]


# ---- acting -------------------------------------------------------------------------------


def _prove_leader(conn: Connection, backend_pid: int) -> None:
    held = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid = :k1 AND objid = :k2 AND objsubid = 2 AND pid = :pid AND granted)"
        ),
        {"k1": LOCK_KEY[0], "k2": LOCK_KEY[1], "pid": backend_pid},
    ).scalar_one()
    if not held:
        raise LeadershipLost("the leader's lock is no longer held by its session")


def _claim_run(conn: Connection, policy_id: int, occurrence: dt.datetime) -> bool:
    row = conn.execute(
        text(
            "UPDATE policies SET last_run_at = :occ WHERE id = :id AND enabled"
            "   AND (last_run_at IS NULL OR last_run_at < :occ) RETURNING id"
        ),
        {"id": policy_id, "occ": occurrence},
    ).first()
    return row is not None


def _abort_user(conn: Connection, vm_id: int, verb: Verb) -> bool:
    """``user_cmd = abort`` (the API's vm_user_disconnect): the holding L7R drops the
    client; nxagent suspends the X session."""
    states = ("connected",) if verb is Verb.DISCONNECT else ("disconnected",)
    row = conn.execute(
        text(
            "UPDATE vm_runtimes SET user_cmd = 'abort' WHERE vm_id = :v AND user_cmd IS NULL"
            "   AND l7r_host_id IS NOT NULL AND user_state IN :states RETURNING vm_id"
        ).bindparams(bindparam("states", expanding=True)),
        {"v": vm_id, "states": list(states)},
    ).first()
    return row is not None


def _act(session: Session, action: Action, weights: Weights) -> bool:
    """One VM action; whether it asked for something."""
    assert action.vm_id is not None
    conn = session.connection()
    if action.verb is Verb.START:
        try:
            outcome = vmrules.start(session, action.vm_id, weights)
        except NoHostAvailable as exc:
            log.warning("policy %r: cannot start VM %s: %s", action.policy_name, action.vm_id, exc)
            return False
        return outcome.host_id is not None
    if action.verb is Verb.STOP:
        decision, _ = vmrules.stop(conn, action.vm_id)
        return decision in (vmrules.StopDecision.REQUEST, vmrules.StopDecision.CANCEL_START)
    return _abort_user(conn, action.vm_id, action.verb)


def apply(
    engine: Engine, actions: Sequence[Action], weights: Weights, backend_pid: int
) -> ApplyReport:
    """Do ``actions`` in order: each VM action in its own transaction, a scheduled
    occurrence's claim and its VM actions in one (each VM in a savepoint)."""
    report = ApplyReport()
    groups: dict[tuple[int, dt.datetime], list[Action]] = {}
    singles: list[Action] = []
    for action in actions:
        if action.occurrence is not None:
            groups.setdefault((action.policy_id, action.occurrence), []).append(action)
        else:
            singles.append(action)
    for (policy_id, occurrence), group in groups.items():
        with Session(engine) as session, session.begin():
            _prove_leader(session.connection(), backend_pid)
            if not _claim_run(session.connection(), policy_id, occurrence):
                report.skipped += len(group)
                continue
            for action in group:
                if action.verb is Verb.MARK_RUN:
                    log.info("policy %r: run of %s", action.policy_name, occurrence.isoformat())
                    continue
                _one(session, action, weights, report)
    for action in singles:
        with Session(engine) as session, session.begin():
            _prove_leader(session.connection(), backend_pid)
            _one(session, action, weights, report)
    return report


def _one(session: Session, action: Action, weights: Weights, report: ApplyReport) -> None:
    try:
        with session.begin_nested():
            if _act(session, action, weights):
                report.done += 1
                log.info("policy %r: %s VM %s", action.policy_name, action.verb.value,
                         action.vm_id)  # fmt: skip
            else:
                report.skipped += 1
    except LookupError:  # the VM went meanwhile
        report.skipped += 1
