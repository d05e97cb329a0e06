"""Spying across tenants: tenant A's administrator wants to watch a desktop of tenant
B. Impossible by construction, shown at both ends:

- the API's ``vm_spy`` selects the VM within the caller's tenant scope (``vm.spy.``
  or not): tenant B's VM is "not found" (1300) and no ticket is issued; it says nothing
  of B's VM;
- the portal's ``/ws/spy`` takes no VM from the browser: the VM is the ticket's row's,
  so a ticket for A's VM presented with B's VM id anywhere in the request (query,
  path, form) still opens A's VM (its audit row names A's VM) or nothing at all.

Guards: ``qvd.api.services.spy`` (``selected_ids`` in scope) and the ticket's
``vm_id`` in ``qvd.db.spytickets`` (``qvd.portal.spy`` reads nothing else)."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from qvd.db.models import AuditLog, VmRuntime, VmSpyTicket
from tests.api.conftest import Api, World
from tests.api.conftest import api as api
from tests.api.conftest import api_engine as api_engine
from tests.api.conftest import config as config
from tests.api.conftest import world as world
from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PortalLab, wait_for
from tests.portal.spyclient import add_admin, new_ticket, post_ticket, spy_ws

portal_lab = portal_fixtures.portal_lab


def test_tenant_a_gets_no_ticket_for_tenant_bs_vm(
    api: Api, world: World, api_engine: Engine
) -> None:
    with Session(api_engine) as s, s.begin():
        s.execute(
            update(VmRuntime).values(vm_state="running", host_id=world.host, user_state="connected")
        )
    sid = api.login("adminA", "tenantA")
    for filters in ({"id": world.vms["B"]}, {"name": "vmB"}, {"id": [world.vms["B"]]}):
        answer = api.act("vm_spy", sid=sid, filters=filters, arguments={"interactive": True})
        assert answer["status"] == 1300, (filters, answer)
        assert "vmB" not in json.dumps(answer)
    answer = api.act("vm_spy", sid=sid, filters={"id": world.vms["A"]})
    assert answer["status"] == 0, answer
    with Session(api_engine) as s:
        assert s.scalars(select(VmSpyTicket.vm_id)).all() == [world.vms["A"]]


def test_the_browser_cannot_point_a_ticket_at_another_vm(portal_lab: PortalLab) -> None:
    engine = portal_lab.engine
    mine, other = portal_lab.seed.vm_id, portal_lab.seed.other_vm
    with engine.begin() as conn:  # the other VM: another tenant's
        tenant = conn.execute(
            text("INSERT INTO tenants (name) VALUES ('other') RETURNING id")
        ).scalar_one()
        conn.execute(text("UPDATE users SET tenant_id = :t WHERE login = 'bob'"), {"t": tenant})
    admin = add_admin(engine, "ops")
    ticket = new_ticket(engine, mine, admin)
    page = post_ticket(portal_lab.port, ticket)
    assert page.status_code == 200
    assert f'data-vm-id="{mine}"' in page.text
    assert "bob-desk" not in page.text
    for path in (f"/ws/spy?vm_id={other}", f"/ws/spy?id={other}&vm={other}"):
        outcome = spy_ws(portal_lab.port, ticket, path=path)
        assert outcome.accepted
        ticket = new_ticket(engine, mine, admin)
    elsewhere = spy_ws(portal_lab.port, ticket, path=f"/ws/spy/{other}")  # no such route
    assert not elsewhere.accepted
    assert not elsewhere.ready
    assert wait_for(lambda: len(_ends(engine)) == 2)
    assert {row for row in _ends(engine)} == {(mine, "alice-desk")}


def _ends(engine: Engine) -> list[tuple[int | None, str | None]]:
    with Session(engine) as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "vm_spy_end")).all()
        return [(r.object_id, r.object_name) for r in rows]
