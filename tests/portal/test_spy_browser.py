"""The spy page in headless Chromium against the real portal (TLS, real PostgreSQL) and
a real x11vnc on Xvfb behind the VMA's HTTP server: the WAT launcher's form post opens
the page, spy.js sends the ticket over ``/ws/spy``, noVNC draws the desktop, nothing
breaks the page's CSP, the ticket leaves the page, and closing it ends the spy in the
audit log. Input from a view-only spy reaching nothing is shown on a real VM by
tests/e2e/test_portal.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from qvd.db.models import AuditLog, Config
from qvd.db.spytickets import TicketState, inspect
from tests.portal.conftest import PortalLab, wait_for
from tests.portal.spyclient import add_admin, new_ticket, spied_vm

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser

from tests.api.conftest import add_admin as add_root
from tests.api.conftest import running_api
from tests.l7r.test_vnc import X11vncService
from tests.wat.browser.conftest import axe_violations, log_in, open_page

NOVNC = Path(__file__).resolve().parents[2] / "src/qvd/portal/vendor/node_modules/@novnc/novnc"
pytestmark = pytest.mark.skipif(
    not (NOVNC / "core/rfb.js").is_file(), reason="noVNC not installed (scripts/deps-portal.sh)"
)

# what the WAT's launcher does: a form posting the ticket to /spy (here from the portal's
# own login page, as the e2e test does)
POST_TICKET = """(ticket) => {
  const form = document.createElement('form');
  form.method = 'POST';
  form.action = '/spy';
  const field = document.createElement('input');
  field.type = 'hidden'; field.name = 'ticket'; field.value = ticket;
  form.appendChild(field);
  document.body.appendChild(form);
  form.submit();
}"""


@pytest.fixture
def spied(portal_lab: PortalLab, tmp_path: Path) -> Iterator[X11vncService]:
    with spied_vm(portal_lab, tmp_path) as service:
        yield service


def test_the_spy_page_shows_the_desktop_view_only(
    chromium: Browser, portal_lab: PortalLab, spied: X11vncService
) -> None:
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    ticket = new_ticket(engine, vm_id, add_admin(engine, "ops"))
    base = f"https://127.0.0.1:{portal_lab.port}"
    with open_page(chromium, base) as bp:
        bp.allow(r"favicon\.ico")  # the portal has none (not the spy's business)
        bp.goto("/")
        with bp.page.expect_navigation():
            bp.page.evaluate(POST_TICKET, ticket)
        assert bp.page.url == base + "/spy"
        try:
            bp.page.wait_for_selector("#screen canvas", state="attached", timeout=60_000)
        except Exception as exc:
            status = bp.page.inner_text("#status")
            raise AssertionError(f"no desktop in the spy page: {status!r}") from exc
        size = bp.page.evaluate(
            "() => { const c = document.querySelector('#screen canvas');"
            " return [c.width, c.height]; }"
        )
        assert size == [640, 480]
        assert bp.page.get_attribute("#screen", "data-ticket") is None  # spy.js dropped it
        assert bp.page.get_attribute("#screen", "data-view-only") == "1"
        assert bp.page.inner_text("#spy-mode") == "View only"
        with engine.connect() as conn:
            assert inspect(conn, ticket)[0] is TicketState.USED
        [request] = spied.requests
        assert (request.view_only, request.attach) == (True, False)
        assert request.notice == "ops is viewing your desktop"
        bp.page.close()
    assert wait_for(lambda: len(_ended(portal_lab)) == 1, 30)
    [status] = _ended(portal_lab)
    assert status == 0


def test_the_wats_spy_button_opens_the_portal_in_a_new_tab(
    chromium: Browser, portal_lab: PortalLab, spied: X11vncService, tmp_path: Path
) -> None:
    """The WAT's page (real API server) → ``#vm-spy`` → the launcher, whose form the
    WAT's CSP lets post to this portal only → the portal's spy page in a new tab."""
    engine, vm_id = portal_lab.engine, portal_lab.seed.vm_id
    with Session(engine) as s, s.begin():
        add_root(s, "ops", 0)
        s.add(Config(tenant_id=-1, key="l7r.portal.port", value=str(portal_lab.port)))
    portal = f"https://127.0.0.1:{portal_lab.port}"
    with (
        running_api(tmp_path, engine) as api,
        open_page(chromium, f"https://127.0.0.1:{api.port}") as wat,
    ):
        log_in(wat, "ops")
        wat.goto(f"/vms/{vm_id}")
        assert wat.page.get_attribute("#vm-spy", "disabled") is None
        with wat.page.context.expect_page(timeout=30_000) as opened:
            wat.page.click("#vm-spy")
        spy = opened.value
        spy.wait_for_selector("#screen canvas", state="attached", timeout=60_000)
        assert spy.url == portal + "/spy"
        assert spy.get_attribute("#screen", "data-view-only") == "1"
        # the WAT's tab shows the launcher, whose ticket is spent
        assert wat.page.locator("form#spy-open").count() == 1
        assert axe_violations(wat.page) == []
        ticket = wat.page.get_attribute("form#spy-open input[name=ticket]", "value")
        assert ticket
        with engine.connect() as conn:
            assert inspect(conn, ticket)[0] is TicketState.USED
        assert ticket not in spy.url
        assert ticket not in wat.page.url
        spy.close()
    assert wait_for(lambda: len(_ended(portal_lab)) == 1, 30)


def _ended(lab: PortalLab) -> list[int]:
    with Session(lab.engine) as s:
        return list(s.scalars(select(AuditLog.status).where(AuditLog.action == "vm_spy_end")).all())
