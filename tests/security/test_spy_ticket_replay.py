"""Spy ticket replay: whoever sees a spy ticket once (a shoulder, a proxy's log, the
launcher page left in a tab, the browser's history) presents it again to watch the
desktop a second time, or races the administrator's own page with it. A ticket opens
one view: the portal's socket uses it up in one ``UPDATE … RETURNING`` (of racing uses
exactly one wins), ``POST /spy`` only looks at it, and it is never in a URL, in the
database in clear or in the audit log.

Guard: ``qvd.db.spytickets.consume`` (used by ``qvd.portal.spy``'s ``/ws/spy``)."""

from __future__ import annotations

import json
import threading

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from qvd.db.models import AuditLog
from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PortalLab, wait_for
from tests.portal.spyclient import SpyOutcome, add_admin, new_ticket, post_ticket, spy_ws

portal_lab = portal_fixtures.portal_lab


def test_a_used_ticket_opens_nothing_again(portal_lab: PortalLab) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    ticket = new_ticket(engine, vm_id, add_admin(engine))
    assert post_ticket(portal_lab.port, ticket).status_code == 200
    first = spy_ws(portal_lab.port, ticket)
    assert first.accepted
    assert "already used" not in " ".join(first.errors)
    for _ in range(3):
        replay = spy_ws(portal_lab.port, ticket)
        assert replay.close_code == 4403
        assert replay.errors == [
            "this spy ticket was already used (each opens one view): open the spy again "
            "from the WAT"
        ]
        assert not replay.ready
        assert replay.binary == []
    page = post_ticket(portal_lab.port, ticket)
    assert page.status_code == 403
    assert ticket not in page.text
    # one view, one end: the replays left no trace of a spy
    assert wait_for(lambda: len(_ends(portal_lab)) == 1)


def test_racing_uses_of_one_ticket_open_one_view(portal_lab: PortalLab) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    ticket = new_ticket(engine, vm_id, add_admin(engine))
    outcomes: list[SpyOutcome] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def use() -> None:
        barrier.wait()
        outcome = spy_ws(portal_lab.port, ticket)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    refused = [o for o in outcomes if o.errors and "already used" in o.errors[0]]
    assert len(outcomes) == 4
    assert len(refused) == 3
    assert all(o.close_code == 4403 for o in refused)
    assert wait_for(lambda: len(_ends(portal_lab)) == 1)


def test_the_ticket_is_kept_nowhere_in_clear(portal_lab: PortalLab) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    ticket = new_ticket(engine, vm_id, add_admin(engine))
    spy_ws(portal_lab.port, ticket)
    assert wait_for(lambda: len(_ends(portal_lab)) == 1)
    with engine.connect() as conn:
        tables = conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all()
        for table in tables:
            dump = " ".join(conn.scalars(text(f'SELECT t::text FROM "{table}" t')).all())
            assert ticket not in dump, table


def _ends(lab: PortalLab) -> list[str]:
    with Session(lab.engine) as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "vm_spy_end")).all()
        return [json.dumps(r.arguments) for r in rows]
