"""A browser session through the portal to a real x11vnc: the shared connect flow, the
VMA's ``vnc_connect`` (authenticated upgrade, one-time password) and the RFB bridge,
read as noVNC would after ``{"ready": true}``: the RFB 3.8 greeting with security type
None, then the desktop's ServerInit (its real size). The VMA's vnc service is the vnc
tests' stand-in that runs the real ``x11vnc -inetd`` command line on a host Xvfb."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.di.testbed import Xvfb
from qvd.portal import session as session_module
from tests.l7r.test_server import final_response, swap_ids
from tests.l7r.test_vnc import X11vncService
from tests.l7r.test_wire import A2
from tests.portal.conftest import PortalLab, running_portal, wait_for
from tests.portal.wsclient import WsClient

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("x11vnc", "Xvfb")),
    reason="needs x11vnc and Xvfb (scripts/deps-l7r.sh)",
)
SIZE = (800, 600)


@pytest.fixture
def vnc_lab(
    db: DatabaseTarget, engine: Engine, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[PortalLab]:
    marker = request.node.get_closest_marker("l7r_config")
    extra: dict[str, str] = dict(marker.kwargs) if marker else {}
    display = Xvfb(f"{SIZE[0]}x{SIZE[1]}x24")
    service = X11vncService(display.display, tmp_path)
    try:
        with running_portal(db, engine, tmp_path, extra, vnc=service) as lab:
            yield lab
    finally:
        for proc in service.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        display.close()


def open_desktop(lab: PortalLab, vm: int) -> WsClient:
    """Log in, open the desktop's socket, follow the progress to ``ready`` and do the
    browser's side of the RFB handshake up to the ServerInit (checked)."""
    browser = lab.browser()
    browser.log_in()
    client = WsClient(
        lab.port,
        f"/ws/desktops/{vm}?geometry=800x600",
        origin=browser.base,
        cookie=f"qvd-portal={browser.token}",
    )
    texts: list[dict[str, object]] = []
    while True:
        got = client.message()
        assert isinstance(got, str), got
        texts.append(json.loads(got))
        if texts[-1].get("ready") or "error" in texts[-1]:
            break
    assert texts[-1] == {"ready": True}, texts
    assert any("progress" in t for t in texts)
    buffer = bytearray()
    assert client.read_bytes(12, buffer) == b"RFB 003.008\n"
    client.send_bytes(b"RFB 003.008\n")
    count = client.read_bytes(1, buffer)[0]
    types = client.read_bytes(count, buffer)
    assert 1 in types  # None: the L7R did the VNC auth with the one-time password
    client.send_bytes(b"\x01")
    assert client.read_bytes(4, buffer) == b"\x00\x00\x00\x00"  # SecurityResult OK
    client.send_bytes(b"\x01")  # ClientInit, shared
    width, height = struct.unpack(">HH", client.read_bytes(4, buffer))
    assert (width, height) == SIZE
    return client


def test_a_browser_session_reaches_the_desktop(vnc_lab: PortalLab) -> None:
    lab = vnc_lab
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    client = open_desktop(lab, vm)
    try:
        assert lab.runtime(vm)["user_state"] == "connected"
    finally:
        client.close()
    assert wait_for(lambda: lab.runtime(vm)["user_state"] == "disconnected")
    assert wait_for(lambda: not lab.core.sessions.holds(vm))


@pytest.mark.l7r_config(**{"internal.l7r.timeout.takeover": "60"})
def test_an_nx_client_takes_over_a_live_browser_session(vnc_lab: PortalLab) -> None:
    lab = vnc_lab
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    client = open_desktop(lab, vm)
    try:
        with lab.nx_client() as nx:
            buffer = bytearray()
            nx.sendall(swap_ids(A2, vm))
            head, body, infos = final_response(nx, buffer)
            assert head.startswith(b"HTTP/1.1 101"), (head, body, infos)
            assert any(b"Aborting contending session" in i for i in infos)
        while True:  # the browser's socket: RFB bytes, then the takeover
            got = client.message()
            if isinstance(got, str):
                assert "taken over" in json.loads(got)["error"]
            elif isinstance(got, int):
                assert got == 4409
                break
    finally:
        client.close()


def test_a_user_blocked_during_a_live_session_is_cut_off(
    vnc_lab: PortalLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "RECHECK_SECONDS", 0.2)  # the portal runs in-process
    lab = vnc_lab
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    client = open_desktop(lab, vm)
    try:
        lab.block_user("alice")
        errors: list[str] = []
        while True:
            got = client.message()
            if isinstance(got, str):
                errors.append(str(json.loads(got)["error"]))
            elif isinstance(got, int):
                assert got == 4403
                break
        assert errors == ["user 'alice' is blocked"]
    finally:
        client.close()
    assert wait_for(lambda: lab.runtime(vm)["user_state"] == "disconnected")
