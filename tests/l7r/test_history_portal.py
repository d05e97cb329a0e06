"""The session history of the browser's door: the portal's login and a VNC session to a
real x11vnc through the shared connect flow (tests/portal/test_vnc_session.py's lab),
ended by the browser, or taken over by an NX client."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import text

from tests.l7r.test_server import final_response, swap_ids
from tests.l7r.test_wire import A2
from tests.portal.conftest import PortalLab, wait_for
from tests.portal.test_vnc_session import open_desktop, vnc_lab

__all__ = ["vnc_lab"]


def rows(lab: PortalLab, where: str = "true") -> list[dict[str, Any]]:
    assert lab.core.history.flush(10)
    with lab.engine.begin() as conn:
        found = conn.execute(text(f"SELECT * FROM session_history WHERE {where} ORDER BY id"))
        return [dict(r) for r in found.mappings()]


def ended(lab: PortalLab, where: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        found = rows(lab, f"({where}) AND ended_at IS NOT NULL")
        if len(found) >= count or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def test_a_browser_login_and_session_are_recorded(vnc_lab: PortalLab) -> None:
    lab = vnc_lab
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    client = open_desktop(lab, vm)
    client.close()
    assert wait_for(lambda: lab.runtime(vm)["user_state"] == "disconnected")
    (login,) = rows(lab, "kind = 'login'")
    assert (login["result"], login["login"], login["transport"]) == ("ok", "alice", "portal")
    (row,) = ended(lab, "kind = 'connect'", 1)
    assert (row["result"], row["transport"], row["end_reason"]) == ("ok", "vnc", "disconnect")
    assert (row["vm_id"], row["vm_name"], row["user_id"]) == (vm, "alice-desk", lab.seed.user_id)
    assert row["bytes_out"] > 0  # the RFB greeting and ServerInit reached the browser
    assert row["bytes_in"] > 0  # its handshake and ClientInit went up


@pytest.mark.l7r_config(**{"internal.l7r.timeout.takeover": "60"})
def test_an_nx_takeover_ends_the_browsers_row_taken_over(vnc_lab: PortalLab) -> None:
    lab = vnc_lab
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    client = open_desktop(lab, vm)
    try:
        with lab.nx_client() as nx:
            nx.sendall(swap_ids(A2, vm))
            head, _, _ = final_response(nx, bytearray())
            assert head.startswith(b"HTTP/1.1 101"), head
            while True:
                got = client.message()
                if isinstance(got, str):
                    assert "taken over" in json.loads(got)["error"]
                elif isinstance(got, int):
                    break
            (browser_row,) = ended(lab, "transport = 'vnc'", 1)
            assert browser_row["end_reason"] == "taken_over"
            (nx_row,) = rows(lab, "transport = 'nx' AND kind <> 'login'")
            assert nx_row["kind"] == "takeover"
    finally:
        client.close()
