"""Cross-site WebSocket hijacking of ``/ws/desktops/{id}``: a page of another origin
(the browser sends the user's cookie along with a same-site request, and its own
``Origin``) opens the user's desktop socket. The portal refuses it with 4403 before
anything runs: no progress, no session taken, no X started in the VM.

Guard: ``qvd.portal.session.origin_ok``."""

from __future__ import annotations

import pytest

from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import PortalLab

portal_lab = portal_fixtures.portal_lab


@pytest.mark.parametrize(
    "origin",
    [
        "https://attacker.example",
        "https://127.0.0.1:1",  # same site, another port: SameSite=Strict sends the cookie
        "http://127.0.0.1",
        "null",
        None,
    ],
)
def test_cross_origin_socket_is_refused(portal_lab: PortalLab, origin: str | None) -> None:
    vm = portal_lab.seed.vm_id
    portal_lab.run_vm(vm)
    victim = portal_lab.browser()
    victim.log_in()
    outcome = victim.ws(f"/ws/desktops/{vm}", origin=origin)
    assert outcome.close_code == 4403, outcome
    assert outcome.progress == []
    assert portal_lab.agent.start_calls == 0
    assert portal_lab.runtime(vm)["user_state"] == "disconnected"
    # the same cookie from the portal's own origin does reach the connect flow
    own = victim.ws(f"/ws/desktops/{vm}")
    assert own.progress, own
    assert portal_lab.agent.start_calls == 1
