"""vnc_connect end to end: the test image in a real LXC container, its real VMA and
x11vnc, the L7R's ``open_vnc`` over the bridge, an NX client under Xvfb on the host."""

from __future__ import annotations

import asyncio
import http.client
import secrets
import struct
import time
from collections.abc import Callable

import pytest

from qvd.di.testbed import NxProxy, Xvfb
from qvd.hkd.backends.lxc.testbed import Container
from qvd.l7r.vnc import Conflict, open_vnc
from qvd.vma.client import VmaClient, VmaRpcError
from tests.vma.helpers import StartContainer, wait_for_xterm, wait_state, xterm_visible
from tests.vma.vncview import TIMEOUT, Frame, VmaAt, grab_frame, read_frame

pytestmark = pytest.mark.timeout(600)

USER = {
    "qvd.vm.user.name": "alice",
    "qvd.vm.user.uid": "23456",
    "qvd.client.link": "lan",
    "qvd.client.geometry": "1024x768",
}
BROWSER = {**USER, "qvd.client.transport": "vnc"}
XTERM_PIXELS = 50_000  # the test image's xterm is white and large; the root is black


def _shows_xterm(frame: Frame) -> bool:
    """An attached viewer's first frame may come before the session (re)draws its
    xterm: the tests read updates until it shows."""
    return frame.bright() > XTERM_PIXELS


def endpoint(container: Container) -> VmaAt:
    return VmaAt(container.address, 3030, container.secret.encode())


def pids(container: Container, command: str) -> list[int]:
    out = container.attach("ps", "-C", command, "-o", "pid=").stdout
    return sorted(int(word) for word in out.split())


def gone(container: Container, command: str, timeout: float = 10.0) -> list[int]:
    """The PIDs of ``command`` once none is left, or those still there at ``timeout``
    (the VMA ends the in-VM viewer's processes just after the state it waits for)."""
    end = time.monotonic() + timeout
    while (left := pids(container, command)) and time.monotonic() < end:
        time.sleep(0.1)
    return left


def connected_nx(
    container: Container, client: VmaClient, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> NxProxy:
    cookie = str(client.x_start(USER)["cookie"])
    assert client.x_wait(timeout=20) == "listening"
    proxy = proxies(
        display=xvfb.display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert wait_state(client, "connected") == "connected", proxy.log()
    assert xterm_visible(wait_for_xterm(xvfb.display)), "no xterm through NX"
    return proxy


def test_spy_while_an_nx_client_is_connected_shows_the_xterm(
    start_container: StartContainer, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    connected_nx(container, client, xvfb, proxies)
    width, height, frame = grab_frame(endpoint(container), view_only=True, attach=False)
    assert width >= 640
    assert height >= 480
    assert frame.bright() > XTERM_PIXELS
    assert client.x_state() == "connected"  # the spy took nothing from the NX client
    log = container.log_text("/var/log/qvd/vma.log")
    assert "vnc_connect -> 101" in log
    assert container.secret not in log


def test_spy_while_suspended_shows_the_xterm(
    start_container: StartContainer, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    connected_nx(container, client, xvfb, proxies).close()
    assert wait_state(client, "suspended") == "suspended"
    _, _, frame = grab_frame(endpoint(container), view_only=True, attach=False)
    assert frame.bright() > XTERM_PIXELS
    assert client.x_state() == "suspended"


def test_spy_refused_without_a_session(start_container: StartContainer) -> None:
    container, _client = start_container()
    with pytest.raises(Conflict, match="stopped"):
        grab_frame(endpoint(container), view_only=True, attach=False)
    assert pids(container, "x11vnc") == []


def test_browser_attach_suspend_and_nx_resume(
    start_container: StartContainer, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    client.x_start(BROWSER)  # what the L7R sends for transport="vnc"
    assert client.x_wait(timeout=20) == "listening"

    async def browse() -> tuple[str, int]:
        stream = await open_vnc(endpoint(container), view_only=False, attach=True, timeout=TIMEOUT)
        try:
            state = await asyncio.to_thread(client.x_state)
            frame = await asyncio.wait_for(read_frame(stream, _shows_xterm), TIMEOUT)
            return state, frame.bright()
        finally:
            await stream.close()

    state, bright = asyncio.run(browse())
    assert state == "connected"  # the in-VM viewer attached the session
    assert bright > XTERM_PIXELS
    session = pids(container, "xterm")
    assert len(session) == 1
    # the stream ended: the viewer let go, the session is suspended
    assert wait_state(client, "suspended", timeout=30) == "suspended"
    assert gone(container, "nxproxy") == []
    assert gone(container, "Xvfb") == []
    # an NX client resumes the same xterm
    connected_nx(container, client, xvfb, proxies)
    assert pids(container, "xterm") == session
    # and a browser again, from suspended, takes it back after the NX client left
    client.x_suspend()
    assert wait_state(client, "suspended") == "suspended"
    _, _, frame = grab_frame(endpoint(container), view_only=False, attach=True, until=_shows_xterm)
    assert frame.bright() > XTERM_PIXELS
    assert wait_state(client, "suspended", timeout=30) == "suspended"
    assert pids(container, "xterm") == session


def test_attach_refused_while_the_session_waits_for_an_nx_client(
    start_container: StartContainer,
) -> None:
    container, client = start_container()
    client.x_start(USER)  # an NX x_start: nxagent accepts the L7R's address only
    assert client.x_wait(timeout=20) == "listening"
    with pytest.raises(Conflict, match="transport=vnc"):
        grab_frame(endpoint(container), view_only=False, attach=True)
    assert pids(container, "nxproxy") == []


def _raw(container: Container, headers: dict[str, str], query: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(container.address, 3030, timeout=10)
    try:
        conn.request("GET", f"/vma/vnc_connect?{query}", headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_bad_requests_are_refused_with_a_reason(
    start_container: StartContainer, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    connected_nx(container, client, xvfb, proxies)
    auth = {"Authorization": f"Bearer {container.secret}"}
    upgrade = {"Connection": "Upgrade", "Upgrade": "VNC"}
    password = {"X-QVD-VNC-Password": "Ab3$Ab3$"}
    cases = [
        ({**upgrade, **password}, "", 401, "authentication required"),
        ({**auth, **password}, "", 426, "Upgrade"),
        ({**auth, **password, "Connection": "Upgrade", "Upgrade": "websocket"}, "", 426, "VNC"),
        ({**auth, **upgrade}, "", 400, "X-QVD-VNC-Password"),
        ({**auth, **upgrade, "X-QVD-VNC-Password": "short"}, "", 400, "8 printable"),
        ({**auth, **upgrade, **password}, "view_only=yes&attach=0", 400, "view_only"),
        ({**auth, **upgrade, **password, "X-QVD-Spy-Notice": "x" * 201}, "", 400, "200"),
    ]
    for headers, query, status, reason in cases:
        got = _raw(container, headers, query or "view_only=1&attach=0")
        assert got[0] == status, (headers, got)
        assert reason in got[1], (headers, got)
    assert pids(container, "x11vnc") == []


def test_nx_takeover_of_a_browser_session_keeps_the_nx_client(
    start_container: StartContainer, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    client.x_start(BROWSER)
    assert client.x_wait(timeout=20) == "listening"

    async def takeover() -> str:
        stream = await open_vnc(endpoint(container), view_only=False, attach=True, timeout=TIMEOUT)
        try:
            await asyncio.wait_for(read_frame(stream), TIMEOUT)
            # an NX client takes the session over while the browser stream is open
            await asyncio.to_thread(connected_nx_after_retry, container, client, xvfb, proxies)
            return await asyncio.to_thread(client.x_state)
        finally:
            await stream.close()

    assert asyncio.run(takeover()) == "connected"
    # the browser stream ended after the takeover: the NX client keeps its session
    assert wait_state(client, "suspended", timeout=5) == "connected"
    assert gone(container, "nxproxy") == []  # the viewer let go when the agent suspended


def connected_nx_after_retry(
    container: Container, client: VmaClient, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    """What the L7R does on an NX connect to a connected session: x_start (refused:
    the agent suspends), wait for suspended, x_start again, connect."""
    with pytest.raises(VmaRpcError, match="retry"):
        client.x_start(USER)
    assert wait_state(client, "suspended", timeout=30) == "suspended"
    connected_nx(container, client, xvfb, proxies)


def test_browser_takeover_of_an_nx_session(
    start_container: StartContainer, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    connected_nx(container, client, xvfb, proxies)
    session = pids(container, "xterm")
    # what the L7R does for a browser: x_start (the agent suspends the NX client), again
    with pytest.raises(VmaRpcError, match="retry"):
        client.x_start(BROWSER)
    assert wait_state(client, "suspended", timeout=30) == "suspended"
    client.x_start(BROWSER)
    assert client.x_wait(timeout=20) == "listening"
    _, _, frame = grab_frame(endpoint(container), view_only=False, attach=True, until=_shows_xterm)
    assert frame.bright() > XTERM_PIXELS
    assert pids(container, "xterm") == session
    assert wait_state(client, "suspended", timeout=30) == "suspended"


def test_browser_session_takes_the_browsers_geometry(start_container: StartContainer) -> None:
    container, client = start_container()
    client.x_start({**BROWSER, "qvd.client.geometry": "1280x720"})
    assert client.x_wait(timeout=20) == "listening"
    width, height, frame = grab_frame(
        endpoint(container), view_only=False, attach=True, until=_shows_xterm
    )
    assert (width, height) == (1280, 720)
    assert frame.bright() > XTERM_PIXELS


def _selection(container: Container, selection: str) -> str:
    done = container.attach(
        "env", "DISPLAY=:100", "XAUTHORITY=/home/alice/.Xauthority",
        "xclip", "-o", "-selection", selection,
    )  # fmt: skip
    return done.stdout


def test_clipboard_text_from_the_browser_pastes_in_the_desktop(
    start_container: StartContainer,
) -> None:
    """x11vnc alone puts a viewer's text into CUT_BUFFER0 only; the VMA's clipboard sync
    makes it the CLIPBOARD and PRIMARY selections that applications paste, for as long
    as the browser session lasts."""
    container, client = start_container()
    client.x_start(BROWSER)
    assert client.x_wait(timeout=20) == "listening"
    text = f"copied-in-the-browser-{secrets.token_hex(4)}"

    def pasted() -> dict[str, str]:
        end = time.monotonic() + 15
        seen = {"clipboard": "", "primary": ""}
        while time.monotonic() < end:
            seen = {name: _selection(container, name) for name in seen}
            if all(value == text for value in seen.values()):
                break
            time.sleep(0.2)
        return seen

    async def browse() -> tuple[dict[str, str], int]:
        stream = await open_vnc(endpoint(container), view_only=False, attach=True, timeout=TIMEOUT)
        try:
            await asyncio.wait_for(read_frame(stream), TIMEOUT)
            stream.writer.write(struct.pack(">B3xI", 6, len(text)) + text.encode())  # ClientCutText
            await stream.writer.drain()
            seen = await asyncio.to_thread(pasted)
            return seen, len(await asyncio.to_thread(pids, container, "autocutsel"))
        finally:
            await stream.close()

    seen, syncers = asyncio.run(browse())
    assert seen == {"clipboard": text, "primary": text}
    assert syncers == 2
    assert wait_state(client, "suspended", timeout=30) == "suspended"
    assert gone(container, "autocutsel") == []  # ended with the browser session
