"""One session per desktop, shared by NX clients and browsers (one registry on the
node): a browser takes over an NX client's session, and an NX client takes over a
browser's (its socket closes with 4409)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from tests.l7r.test_server import final_response, swap_ids
from tests.l7r.test_wire import A2, GREETING
from tests.portal.conftest import PortalLab, wait_for
from tests.portal.wsclient import WsOutcome

# a loaded machine may take seconds to let go of a session: give the takeovers time
pytestmark = pytest.mark.l7r_config(**{"internal.l7r.timeout.takeover": "60"})


def test_a_browser_takes_over_an_nx_session(portal_lab: PortalLab) -> None:
    vm = portal_lab.seed.vm_id
    portal_lab.run_vm(vm)
    nx = portal_lab.nx_client()
    buffer = bytearray()
    nx.sendall(swap_ids(A2, vm))
    head, _, _ = final_response(nx, buffer)
    assert head.startswith(b"HTTP/1.1 101"), head
    nx.sendall(GREETING)
    nx.recv(100)
    assert portal_lab.runtime(vm)["user_state"] == "connected"
    browser = portal_lab.browser()
    browser.log_in()
    outcome = browser.ws(f"/ws/desktops/{vm}")
    assert f"Aborting contending session for VM_ID: {vm}" in outcome.progress, outcome
    assert f"Session acquired for VM_ID: {vm}" in outcome.progress
    nx.settimeout(10)
    assert nx.recv(100) == b"", "the NX client was cut off"
    nx.close()


def test_an_nx_client_takes_over_a_browser_session(portal_lab: PortalLab) -> None:
    vm = portal_lab.seed.vm_id
    portal_lab.run_vm(vm)
    with portal_lab.engine.begin() as conn:  # caught starting: the browser's flow waits
        conn.execute(
            text("UPDATE vm_runtimes SET vm_state = 'starting' WHERE vm_id = :v"), {"v": vm}
        )
    browser = portal_lab.browser()
    browser.log_in()
    seen: list[WsOutcome] = []
    opened = threading.Thread(
        target=lambda: seen.append(browser.ws(f"/ws/desktops/{vm}", timeout=60)), daemon=True
    )
    opened.start()
    assert wait_for(lambda: portal_lab.core.sessions.holds(vm))
    assert portal_lab.runtime(vm)["user_state"] == "connecting"
    with portal_lab.nx_client() as nx:
        buffer = bytearray()
        nx.sendall(swap_ids(A2, vm))
        opened.join(30)
        assert seen, "the browser's socket did not close"
        outcome = seen[0]
        assert outcome.close_code == 4409, outcome
        assert "taken over" in outcome.errors[0]
        portal_lab.run_vm(vm)  # the VM comes up: the NX client gets its session
        head, _, infos = final_response(nx, buffer)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert any(b"Aborting contending session" in i for i in infos)
