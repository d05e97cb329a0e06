"""Spy tickets on a real PostgreSQL: issued hashed, looked at without being used, used
once (also when two uses race), refused once expired, unknown when forged, gone with
their VM; the ``vm_spy_end`` audit row."""

from __future__ import annotations

import hashlib
import threading

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from qvd.db.models import AuditLog, VmSpyTicket
from qvd.db.spytickets import (
    TICKET_SECONDS,
    SpyGrant,
    TicketState,
    consume,
    inspect,
    issue,
    record_spy_end,
    ticket_digest,
    well_formed,
)
from tests.api.conftest import World, build_world


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


def _issue(engine: Engine, world: World, *, interactive: bool = False, label: str = "A") -> str:
    with engine.begin() as conn:
        ticket, _ = issue(
            conn,
            vm_id=world.vms[label],
            administrator_id=world.admins[label],
            administrator_name=f"admin{label}",
            tenant_id=world.tenants[label],
            interactive=interactive,
            address="192.0.2.5",
        )
    return ticket


def _inspect(engine: Engine, ticket: object) -> tuple[TicketState, SpyGrant | None]:
    with engine.connect() as conn:
        return inspect(conn, ticket)


def _consume(engine: Engine, ticket: object) -> tuple[TicketState, SpyGrant | None]:
    with engine.begin() as conn:
        return consume(conn, ticket)


def test_a_ticket_is_stored_as_its_digest_only(engine: Engine, world: World) -> None:
    ticket = _issue(engine, world, interactive=True)
    assert well_formed(ticket)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT t::text FROM vm_spy_tickets t")).scalars().all()
        expiration, now = conn.execute(select(VmSpyTicket.expiration, func.now())).one()
    assert len(rows) == 1
    assert ticket not in rows[0]
    assert hashlib.sha256(ticket.encode()).hexdigest() in rows[0]
    assert 0 < (expiration - now).total_seconds() <= TICKET_SECONDS
    state, grant = _inspect(engine, ticket)
    assert state is TicketState.VALID
    assert grant == SpyGrant(
        vm_id=world.vms["A"],
        administrator_id=world.admins["A"],
        administrator_name="adminA",
        tenant_id=world.tenants["A"],
        interactive=True,
    )


def test_looking_does_not_use_it_and_it_is_used_once(engine: Engine, world: World) -> None:
    ticket = _issue(engine, world)
    for _ in range(3):
        assert _inspect(engine, ticket)[0] is TicketState.VALID
    state, grant = _consume(engine, ticket)
    assert state is TicketState.VALID
    assert grant is not None
    assert grant.vm_id == world.vms["A"]
    assert _consume(engine, ticket) == (TicketState.USED, None)
    assert _inspect(engine, ticket) == (TicketState.USED, None)
    with Session(engine) as s:
        assert s.scalars(select(VmSpyTicket.used_at)).one() is not None


def test_an_expired_ticket_is_refused(engine: Engine, world: World) -> None:
    ticket = _issue(engine, world)
    with engine.begin() as conn:
        conn.execute(
            update(VmSpyTicket).values(expiration=func.now() - text("interval '1 second'"))
        )
    assert _inspect(engine, ticket) == (TicketState.EXPIRED, None)
    assert _consume(engine, ticket) == (TicketState.EXPIRED, None)
    with Session(engine) as s:
        assert s.scalars(select(VmSpyTicket.used_at)).one() is None
    assert "expired" in TicketState.EXPIRED.reason


@pytest.mark.parametrize(
    "forged",
    ["", "x", "A" * 43, "A" * 42 + "!", "A" * 44, None, 42, "é" * 43],
)
def test_a_forged_ticket_is_unknown(engine: Engine, world: World, forged: object) -> None:
    real = _issue(engine, world)
    assert forged != real
    assert _inspect(engine, forged) == (TicketState.UNKNOWN, None)
    assert _consume(engine, forged) == (TicketState.UNKNOWN, None)
    # its digest, presented as a ticket, is no ticket either
    assert _consume(engine, ticket_digest(real)) == (TicketState.UNKNOWN, None)
    assert _inspect(engine, real)[0] is TicketState.VALID


def _race(engine: Engine, ticket: str, users: int) -> list[str]:
    """``users`` threads use ``ticket`` at the same moment; what each was told."""
    barrier = threading.Barrier(users)
    results: list[str] = []
    lock = threading.Lock()

    def use() -> None:
        barrier.wait()
        state, _ = _consume(engine, ticket)
        with lock:
            results.append(state.value)

    threads = [threading.Thread(target=use) for _ in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(results)


def test_of_two_racing_uses_one_wins(engine: Engine, world: World) -> None:
    for _ in range(5):
        ticket = _issue(engine, world)
        assert _race(engine, ticket, 4) == ["used", "used", "used", "valid"]


def test_tickets_go_with_their_vm(engine: Engine, world: World) -> None:
    ticket = _issue(engine, world)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM vms WHERE id = :v"), {"v": world.vms["A"]})
    assert _inspect(engine, ticket) == (TicketState.UNKNOWN, None)


def test_long_expired_tickets_are_dropped_when_a_new_one_is_issued(
    engine: Engine, world: World
) -> None:
    old = _issue(engine, world)
    with engine.begin() as conn:
        conn.execute(update(VmSpyTicket).values(expiration=func.now() - text("interval '2 hours'")))
    _issue(engine, world)
    assert _inspect(engine, old) == (TicketState.UNKNOWN, None)
    with Session(engine) as s:
        assert len(s.scalars(select(VmSpyTicket)).all()) == 1


def test_the_end_of_a_spy_is_audited(engine: Engine, world: World) -> None:
    ticket = _issue(engine, world, interactive=True)
    grant = _consume(engine, ticket)[1]
    assert grant is not None
    with engine.begin() as conn:
        record_spy_end(conn, grant, seconds=42, address="198.51.100.4")
        record_spy_end(conn, grant, seconds=0, address=None, status=5150, reason="not shown")
    with Session(engine) as s:
        rows = s.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(r.action, r.type_of_action, r.qvd_object, r.source) for r in rows] == [
        ("vm_spy_end", "exec", "vm", "PORTAL")
    ] * 2
    shown, refused = rows
    assert (shown.object_id, shown.object_name) == (world.vms["A"], "vmA")
    assert (shown.administrator_id, shown.administrator_name) == (world.admins["A"], "adminA")
    assert (shown.tenant_id, shown.tenant_name) == (world.tenants["A"], "tenantA")
    assert shown.arguments == {"seconds": 42, "interactive": True}
    assert (shown.status, shown.ip, shown.superadmin) == (0, "198.51.100.4", False)
    assert refused.arguments == {"seconds": 0, "interactive": True, "reason": "not shown"}
    assert refused.status == 5150
