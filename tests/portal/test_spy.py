"""The portal's spy routes against a real L7R with the portal attached (TLS, real
PostgreSQL): ``POST /spy`` looks at the ticket without using it and renders the spy
page; ``WS /ws/spy`` uses it (once) from the spy page's origin; every used ticket ends
with a ``vm_spy_end`` audit row. The whole picture on a real VM (pixels, the notice,
view-only input ignored) is tests/e2e/test_portal.py's."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from qvd.db.models import AuditLog, VmSpyTicket
from qvd.db.spytickets import TicketState, inspect
from qvd.portal.spy import notice_text
from tests.l7r.test_vnc import X11vncService
from tests.portal.conftest import PortalLab, wait_for
from tests.portal.spyclient import add_admin, new_ticket, post_ticket, spied_vm, spy_ws


def _state(engine: Engine, ticket: str) -> TicketState:
    with engine.connect() as conn:
        return inspect(conn, ticket)[0]


def _ended(engine: Engine, vm_id: int) -> list[AuditLog]:
    with Session(engine) as s:
        return list(
            s.scalars(
                select(AuditLog)
                .where(AuditLog.action == "vm_spy_end", AuditLog.object_id == vm_id)
                .order_by(AuditLog.id)
            )
        )


def test_the_spy_page_holds_the_ticket_and_does_not_use_it(portal_lab: PortalLab) -> None:
    vm_id = portal_lab.seed.vm_id
    admin = add_admin(portal_lab.engine)
    for interactive, view_only in ((False, "1"), (True, "0")):
        ticket = new_ticket(portal_lab.engine, vm_id, admin, interactive=interactive)
        r = post_ticket(portal_lab.port, ticket)
        assert r.status_code == 200, r.text
        screen = re.search(r'<div id="screen" ([^>]*)>', r.text)
        assert screen, r.text
        attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', screen.group(1)))
        assert attrs["data-ws"] == "/ws/spy"
        assert htmllib.unescape(attrs["data-ticket"]) == ticket
        assert attrs["data-view-only"] == view_only
        assert attrs["data-vm-id"] == str(vm_id)
        assert '<script src="/static/js/spy.js" type="module" fetchpriority="high">' in r.text
        assert "alice-desk" in r.text
        assert "<script>" not in r.text
        assert "style=" not in r.text
        assert r.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "set-cookie" not in r.headers
        # looking at it (even twice: a reload) does not use it
        assert post_ticket(portal_lab.port, ticket).status_code == 200
        assert _state(portal_lab.engine, ticket) is TicketState.VALID


def test_unknown_expired_and_used_tickets_get_403_with_the_reason(portal_lab: PortalLab) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    admin = add_admin(engine)
    r = post_ticket(portal_lab.port, "A" * 43)
    assert r.status_code == 403
    assert "unknown" in r.text
    r = post_ticket(portal_lab.port, "")
    assert r.status_code == 403
    expired = new_ticket(engine, vm_id, admin)
    with engine.begin() as conn:
        conn.execute(update(VmSpyTicket).values(expiration=func.now()))
    r = post_ticket(portal_lab.port, expired)
    assert r.status_code == 403
    assert "expired" in r.text
    used = new_ticket(engine, vm_id, admin)
    first = spy_ws(portal_lab.port, used)
    assert first.accepted
    r = post_ticket(portal_lab.port, used)
    assert r.status_code == 403
    assert "already used" in r.text
    assert used not in r.text
    assert expired not in r.text


def test_the_socket_uses_the_ticket_once(portal_lab: PortalLab) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    ticket = new_ticket(engine, vm_id, add_admin(engine))
    first = spy_ws(portal_lab.port, ticket)
    assert first.accepted
    assert _state(engine, ticket) is TicketState.USED
    second = spy_ws(portal_lab.port, ticket)
    assert second.close_code == 4403
    assert second.errors == [TicketState.USED.reason]
    assert not second.ready
    assert second.binary == []


def test_a_socket_from_another_origin_is_refused_and_the_ticket_kept(
    portal_lab: PortalLab,
) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    ticket = new_ticket(engine, vm_id, add_admin(engine))
    for origin in ("https://evil.example", None):
        outcome = spy_ws(portal_lab.port, ticket, origin=origin)
        assert outcome.close_code == 4403, origin
        assert "spy page" in outcome.errors[0]
    assert _state(engine, ticket) is TicketState.VALID


@pytest.mark.parametrize("first", [None, b"\x00" * 43, "x" * 300, "not-a-ticket"])
def test_a_socket_without_a_ticket_frame_is_refused(
    portal_lab: PortalLab, first: str | bytes | None
) -> None:
    outcome = spy_ws(portal_lab.port, first, timeout=60)
    assert outcome.close_code == 4403
    assert outcome.errors
    assert not outcome.ready
    assert _ended(portal_lab.engine, portal_lab.seed.vm_id) == []


def test_a_spy_that_cannot_be_shown_says_why_and_is_audited(portal_lab: PortalLab) -> None:
    """The VM is stopped: the ticket is used, the socket says why, the end is logged."""
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    admin = add_admin(engine, "ops")
    ticket = new_ticket(engine, vm_id, admin, interactive=True)
    outcome = spy_ws(portal_lab.port, ticket)
    assert outcome.accepted
    assert outcome.close_code == 4503, outcome
    assert len(outcome.errors) == 1
    assert not outcome.ready
    assert wait_for(lambda: len(_ended(engine, vm_id)) == 1)
    [row] = _ended(engine, vm_id)
    assert (row.administrator_id, row.administrator_name, row.source) == (admin, "ops", "PORTAL")
    assert row.tenant_id == 1
    assert row.status == 5150
    assert row.arguments == {"seconds": 0, "interactive": True, "reason": outcome.errors[0]}
    assert row.ip == "127.0.0.1"
    assert row.object_name == "alice-desk"


def test_the_notice_names_the_administrator() -> None:
    assert notice_text("ops", False) == "ops is viewing your desktop"
    assert notice_text("ops", True) == "ops is viewing and may control your desktop"
    assert notice_text("a\x1b[2Jb\n", False) == "a[2Jb is viewing your desktop"
    assert notice_text("\n", False).startswith("An administrator")
    assert len(notice_text("x" * 300, True)) <= 200


# ---- the whole path, to a real x11vnc on Xvfb behind the VMA's HTTP server ------------
@pytest.fixture
def spied(portal_lab: PortalLab, tmp_path: Path) -> Iterator[X11vncService]:
    with spied_vm(portal_lab, tmp_path) as service:
        yield service


def test_a_view_only_spy_reaches_x11vnc_with_the_notice(
    portal_lab: PortalLab, spied: X11vncService
) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    admin = add_admin(engine, "ops")
    ticket = new_ticket(engine, vm_id, admin)
    outcome = spy_ws(portal_lab.port, ticket, until_ready=True)
    assert outcome.ready, outcome
    assert outcome.errors == []
    [request] = spied.requests
    assert (request.view_only, request.attach) == (True, False)
    assert request.notice == "ops is viewing your desktop"
    assert wait_for(lambda: len(_ended(engine, vm_id)) == 1)
    [row] = _ended(engine, vm_id)
    assert row.status == 0
    assert row.arguments is not None
    assert row.arguments["interactive"] is False
    assert isinstance(row.arguments["seconds"], int)
    assert "reason" not in row.arguments
    # the user's own session was not taken: no session is held for the VM
    assert not portal_lab.core.sessions.holds(vm_id)
    assert portal_lab.runtime(vm_id)["user_state"] == "disconnected"


def test_an_interactive_spy_is_not_view_only_and_the_tenant_may_hide_the_notice(
    portal_lab: PortalLab, spied: X11vncService
) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO configs (tenant_id, key, value) VALUES (1, 'vm.spy.notice', '0')")
        )
    portal_lab.core.live.expire()
    ticket = new_ticket(engine, vm_id, add_admin(engine, "ops"), interactive=True)
    outcome = spy_ws(portal_lab.port, ticket, until_ready=True)
    assert outcome.ready, outcome
    [request] = spied.requests
    assert (request.view_only, request.attach, request.notice) == (False, False, "")
    assert wait_for(lambda: len(_ended(engine, vm_id)) == 1)
    arguments = _ended(engine, vm_id)[0].arguments
    assert arguments is not None
    assert sorted(arguments) == ["interactive", "seconds"]
    assert arguments["interactive"] is True
