"""Another user's desktop by id, over HTTP and the WebSocket: alice asks for bob's VM
(start, stop, restart, its session page, its socket). Every one is a 404 that names
neither bob nor his desktop, and bob's VM and his open session are left alone (no
takeover of another user's session).

Guard: ``ConnectFlow.check_vm`` called by ``qvd.portal.desktops`` and
``qvd.portal.session`` before anything is written; ``desktops_of`` lists one user's."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PortalLab

portal_lab = portal_fixtures.portal_lab


def _bob_is_connected(lab: PortalLab) -> None:
    lab.run_vm(lab.seed.other_vm)
    with lab.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE vm_runtimes SET user_state = 'connected', l7r_host_id = :h WHERE vm_id = :v"
            ),
            {"h": lab.seed.host_id, "v": lab.seed.other_vm},
        )


def _bob_untouched(lab: PortalLab) -> None:
    rt = lab.runtime(lab.seed.other_vm)
    assert (rt["vm_state"], rt["vm_cmd"], rt["user_state"], rt["user_cmd"]) == (
        "running",
        None,
        "connected",
        None,
    )


@pytest.mark.parametrize("op", ["start", "stop", "restart"])
def test_operations_on_another_users_desktop_are_404(portal_lab: PortalLab, op: str) -> None:
    _bob_is_connected(portal_lab)
    alice = portal_lab.browser()
    alice.log_in()
    response = alice.act(portal_lab.seed.other_vm, op)
    assert response.status_code == 404
    assert "does not belong to alice" in response.json()["error"]
    assert "bob" not in response.text
    _bob_untouched(portal_lab)


def test_another_users_desktop_is_not_listed_nor_its_page_served(portal_lab: PortalLab) -> None:
    alice = portal_lab.browser()
    alice.log_in()
    assert portal_lab.seed.other_vm not in [d["id"] for d in alice.get("/api/desktops").json()]
    page = alice.get(f"/desktops/{portal_lab.seed.other_vm}")
    assert page.status_code == 404
    assert "bob" not in page.text


def test_another_users_socket_is_404_and_takes_nothing_over(portal_lab: PortalLab) -> None:
    _bob_is_connected(portal_lab)
    alice = portal_lab.browser()
    alice.log_in()
    outcome = alice.ws(f"/ws/desktops/{portal_lab.seed.other_vm}")
    assert outcome.close_code == 4404
    assert outcome.progress == []
    assert "bob" not in " ".join(outcome.errors)
    assert portal_lab.agent.start_calls == 0
    _bob_untouched(portal_lab)
