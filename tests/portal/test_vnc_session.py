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
from tests.portal.conftest import PortalLab, running_portal, wait_for
from tests.portal.wsclient import WsClient

vnc = pytest.importorskip("qvd.l7r.vnc", reason="the vnc branch (qvd.l7r.vnc) is not merged")
vnc_tests = pytest.importorskip("tests.l7r.test_vnc")
testbed = pytest.importorskip("qvd.di.testbed")

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("x11vnc", "Xvfb")),
    reason="needs x11vnc and Xvfb (scripts/deps-l7r.sh)",
)
SIZE = (800, 600)


@pytest.fixture
def vnc_lab(db: DatabaseTarget, engine: Engine, tmp_path: Path) -> Iterator[PortalLab]:
    display = testbed.Xvfb(f"{SIZE[0]}x{SIZE[1]}x24")
    service = vnc_tests.X11vncService(display.display, tmp_path)
    try:
        with running_portal(db, engine, tmp_path, {}, vnc=service) as lab:
            yield lab
    finally:
        for proc in service.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        display.close()


def test_a_browser_session_reaches_the_desktop(vnc_lab: PortalLab) -> None:
    lab = vnc_lab
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    browser = lab.browser()
    browser.log_in()
    client = WsClient(
        lab.port,
        f"/ws/desktops/{vm}?geometry=800x600",
        origin=browser.base,
        cookie=f"qvd-portal={browser.token}",
    )
    try:
        texts: list[dict[str, object]] = []
        while True:
            got = client.message()
            assert isinstance(got, str), got
            texts.append(json.loads(got))
            if texts[-1].get("ready") or "error" in texts[-1]:
                break
        assert texts[-1] == {"ready": True}, texts
        assert any("progress" in t for t in texts)
        assert lab.runtime(vm)["user_state"] == "connected"
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
    finally:
        client.close()
    assert wait_for(lambda: lab.runtime(vm)["user_state"] == "disconnected")
    assert wait_for(lambda: not lab.core.sessions.holds(vm))
