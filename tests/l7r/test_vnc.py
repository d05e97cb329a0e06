"""qvd.l7r.vnc against a real x11vnc on a real Xvfb, fronted by the VMA's HTTP server.

The VMA's ``VmaHTTPServer`` does the authenticated upgrade as in a VM; its
``VncService`` here is a test stand-in for the session runner (no nxagent, no user
switch): it runs the real ``x11vnc -inetd`` command line of ``qvd.vma.vnc`` on the
host's Xvfb with the one-time password it was given. Needs x11vnc, Xvfb, xterm and
xdotool on the host (scripts/deps-l7r.sh, scripts/deps-di.sh).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qvd.di.testbed import Xvfb
from qvd.l7r.errors import Unavailable
from qvd.l7r.rfb import RFB_38
from qvd.l7r.vnc import Conflict, VncStream, bridge, open_vnc
from qvd.vma.auth import SecretStore
from qvd.vma.server import VmaHTTPServer, make_server
from qvd.vma.vnc import VncRefused, VncRequest, x11vnc_argv
from tests.vma.test_simplerpc import RecordingAgent

SECRET = b"vnc-test-secret-0123456789"
SIZE = (800, 600)
TIMEOUT = 20.0

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("x11vnc", "Xvfb", "xterm", "xdotool")),
    reason="needs x11vnc, Xvfb, xterm, xdotool (scripts/deps-l7r.sh, deps-di.sh)",
)


@dataclass
class Endpoint:
    address: str
    port: int
    secret: bytes


class X11vncService:
    """Stand-in for ``VncSessions``: the real x11vnc command line on an Xvfb."""

    def __init__(self, display: str, workdir: Path) -> None:
        self.display = display
        self.workdir = workdir
        self.refuse: VncRefused | None = None
        self.wrong_password = False
        self.requests: list[VncRequest] = []
        self.started: list[subprocess.Popen[bytes]] = []

    def serve(
        self, request: VncRequest, connection: socket.socket, accepted: Callable[[], None]
    ) -> None:
        self.requests.append(request)
        if self.refuse is not None:
            raise self.refuse
        password = "zzzzzzzz" if self.wrong_password else request.password
        password_file = self.workdir / f"pass-{len(self.requests)}"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        xauth = self.workdir / "xauth"
        xauth.touch()
        argv = x11vnc_argv(
            "x11vnc",
            display=int(self.display.lstrip(":")),
            xauthority=str(xauth),
            password_file=str(password_file),
            view_only=request.view_only,
            extra=[],
        )
        accepted()
        with open(self.workdir / "x11vnc.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=connection.fileno(),
                stdout=connection.fileno(),
                stderr=log,
                start_new_session=True,
            )
        self.started.append(proc)
        proc.wait()


@pytest.fixture
def xvfb() -> Iterator[Xvfb]:
    display = Xvfb(f"{SIZE[0]}x{SIZE[1]}x24")
    yield display
    display.close()


@pytest.fixture
def vma(xvfb: Xvfb, tmp_path: Path) -> Iterator[tuple[Endpoint, X11vncService]]:
    secret_file = tmp_path / "vma.secret"
    secret_file.write_bytes(SECRET + b"\n")
    service = X11vncService(xvfb.display, tmp_path)
    server: VmaHTTPServer = make_server(
        "127.0.0.1", 0, RecordingAgent(), SecretStore(secret_file, environ={}), vnc=service
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield Endpoint("127.0.0.1", server.server_address[1], SECRET), service
    server.shutdown()
    server.server_close()
    thread.join()
    for proc in service.started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def _server_init(stream: VncStream) -> tuple[int, int, str]:
    stream.writer.write(b"\x01")  # ClientInit: shared
    await stream.writer.drain()
    head = stream.pending + await stream.reader.readexactly(24 - len(stream.pending))
    width, height = struct.unpack(">HH", head[:4])
    (name_length,) = struct.unpack(">I", head[20:24])
    name = await stream.reader.readexactly(name_length)
    return width, height, name.decode("utf-8", "replace")


async def _sync(stream: VncStream) -> None:
    """A full FramebufferUpdateRequest and the start of its answer: x11vnc handles a
    client's messages in order, so every earlier input event was processed."""
    stream.writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, SIZE[0], SIZE[1]))
    await stream.writer.drain()
    while True:
        kind = await stream.reader.readexactly(1)
        if kind == b"\x00":  # FramebufferUpdate
            await stream.reader.readexactly(3)
            return
        raise AssertionError(f"unexpected server message {kind!r}")


def test_upgrade_and_vnc_auth_reach_server_init(vma: tuple[Endpoint, X11vncService]) -> None:
    endpoint, service = vma

    async def run() -> tuple[int, int, str]:
        stream = await open_vnc(endpoint, view_only=False, attach=True, timeout=TIMEOUT)
        try:
            return await _server_init(stream)
        finally:
            await stream.close()

    width, height, _ = asyncio.run(run())
    assert (width, height) == SIZE
    (request,) = service.requests
    assert request.attach
    assert not request.view_only
    assert len(request.password) == 8
    assert request.password not in repr(request)
    # x11vnc read the one-time password from its file, deleted it and logged nothing of it
    assert request.password not in (service.workdir / "x11vnc.log").read_text()
    assert not (service.workdir / "pass-1").exists()


def test_wrong_one_time_password_fails_cleanly(vma: tuple[Endpoint, X11vncService]) -> None:
    endpoint, service = vma
    service.wrong_password = True
    with pytest.raises(Unavailable, match="refused the password"):
        asyncio.run(open_vnc(endpoint, view_only=True, attach=False, timeout=TIMEOUT))


def test_refusal_carries_the_vma_reason(vma: tuple[Endpoint, X11vncService]) -> None:
    endpoint, service = vma
    service.refuse = VncRefused(409, "the session is stopped: nothing to view")
    with pytest.raises(Conflict, match="the session is stopped: nothing to view"):
        asyncio.run(open_vnc(endpoint, view_only=True, attach=False, timeout=TIMEOUT))


def test_wrong_vma_secret_is_refused_before_x11vnc(vma: tuple[Endpoint, X11vncService]) -> None:
    endpoint, service = vma
    wrong = Endpoint(endpoint.address, endpoint.port, b"not-the-secret")
    with pytest.raises(Unavailable, match="refused the L7R"):
        asyncio.run(open_vnc(wrong, view_only=True, attach=False, timeout=TIMEOUT))
    assert service.requests == []


class FakeBrowser:
    """A ByteChannel playing noVNC's part: 3.8, None, ClientInit, then ServerInit."""

    def __init__(self) -> None:
        self.to_bridge: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.from_bridge = bytearray()
        self.arrived = asyncio.Event()

    async def receive(self) -> bytes | None:
        return await self.to_bridge.get()

    async def send(self, data: bytes) -> None:
        self.from_bridge += data
        self.arrived.set()

    async def expect(self, size: int) -> bytes:
        while len(self.from_bridge) < size:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), TIMEOUT)
        chunk = bytes(self.from_bridge[:size])
        del self.from_bridge[:size]
        return chunk


def test_bridge_delivers_server_init_to_the_browser(vma: tuple[Endpoint, X11vncService]) -> None:
    endpoint, _ = vma

    async def run() -> tuple[int, int]:
        stream = await open_vnc(endpoint, view_only=True, attach=False, timeout=TIMEOUT)
        browser = FakeBrowser()
        relay = asyncio.create_task(bridge(browser, stream))
        assert await browser.expect(12) == RFB_38
        await browser.to_bridge.put(RFB_38)
        assert await browser.expect(2) == bytes([1, 1])  # one type: None
        await browser.to_bridge.put(b"\x01")
        assert await browser.expect(4) == b"\0\0\0\0"  # SecurityResult OK
        await browser.to_bridge.put(b"\x01")  # ClientInit, relayed to x11vnc
        server_init = await browser.expect(24)
        await browser.to_bridge.put(None)  # the browser leaves: the bridge ends
        await asyncio.wait_for(relay, TIMEOUT)
        width, height = struct.unpack(">HH", server_init[:4])
        return width, height

    assert asyncio.run(run()) == SIZE


def _xterm_reading_one_key(display: str, out: Path) -> subprocess.Popen[bytes]:
    script = f"stty raw -echo; head -c 1 > {out}"
    proc = subprocess.Popen(
        ["xterm", "-geometry", "40x10+0+0", "-e", "sh", "-c", script],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env = {**os.environ, "DISPLAY": display}
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:  # the window is mapped: the pointer can go in it
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--class", "xterm"],
            env=env,
            capture_output=True,
            check=False,
        )
        if found.returncode == 0 and found.stdout.strip():
            break
        time.sleep(0.05)
    subprocess.run(["xdotool", "mousemove", "50", "50"], env=env, check=True)  # focus
    return proc


@pytest.mark.parametrize("view_only", [False, True], ids=["interactive", "view-only"])
def test_view_only_drops_key_events(
    vma: tuple[Endpoint, X11vncService], xvfb: Xvfb, tmp_path: Path, view_only: bool
) -> None:
    endpoint, _ = vma
    out = tmp_path / "typed"
    xterm = _xterm_reading_one_key(xvfb.display, out)
    try:

        async def run() -> None:
            stream = await open_vnc(endpoint, view_only=view_only, attach=False, timeout=TIMEOUT)
            try:
                await _server_init(stream)
                for down in (1, 0):  # KeyEvent 'a'
                    stream.writer.write(struct.pack(">BBxxI", 4, down, ord("a")))
                await _sync(stream)
            finally:
                await stream.close()

        asyncio.run(run())
        # then a local key: the xterm keeps the first key it got
        env = {**os.environ, "DISPLAY": xvfb.display}
        subprocess.run(["xdotool", "key", "b"], env=env, check=True)
        xterm.wait(TIMEOUT)
        assert out.read_text() == ("b" if view_only else "a")
    finally:
        if xterm.poll() is None:
            xterm.kill()
        xterm.wait()


# --- a hostile or broken VMA (a unit test of open_vnc's parsing: a scripted peer) ---


async def _scripted_vma(answer: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"HTTP/1.1 101 OK\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n", "oversized"),
        (b"garbage\r\n\r\n", "malformed"),
        (b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n", "did not switch to VNC"),
        (b"HTTP/1.1 101 Switching\r\nno colon here\r\n\r\n", "malformed header"),
        (b"", "closed the connection before answering"),
        (b"HTTP/1.1 101 Switching\r\nUpgrade: VNC\r\n\r\nRFB 003.008\n\x01\x01", "no VNC auth"),
        (b"HTTP/1.1 101 Switching\r\nUpgrade: VNC\r\n\r\nRFB 003.008\n", "closed the connection"),
        (b"HTTP/1.1 101 Switching\r\nUpgrade: VNC\r\n\r\nSSH-2.0-OpenSSH\r\n", "not an RFB"),
        (b"HTTP/1.1 503 No\r\nContent-Length: 99999\r\n\r\n" + b"r" * 5000, "r" * 100),
    ],
    ids=[
        "big-head",
        "garbage",
        "websocket",
        "bad-header",
        "closed",
        "no-vnc-auth",
        "closed-in-rfb",
        "not-rfb",
        "long-body",
    ],
)
def test_malformed_vma_answers_fail_cleanly(answer: bytes, reason: str) -> None:
    async def run() -> None:
        server, port = await _scripted_vma(answer)
        try:
            await open_vnc(
                Endpoint("127.0.0.1", port, SECRET), view_only=True, attach=False, timeout=TIMEOUT
            )
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(Unavailable, match=reason) as caught:
        asyncio.run(run())
    assert len(caught.value.message) < 4200  # the reason read is bounded


def test_a_silent_browser_is_dropped_and_the_vnc_server_ends(
    vma: tuple[Endpoint, X11vncService],
) -> None:
    endpoint, service = vma

    async def run() -> None:
        stream = await open_vnc(endpoint, view_only=True, attach=False, timeout=TIMEOUT)
        browser = FakeBrowser()  # never answers the greeting
        await bridge(browser, stream, greeting_timeout=0.5)

    with pytest.raises(Unavailable, match="did not finish the RFB handshake"):
        asyncio.run(run())
    (server,) = service.started
    assert server.wait(TIMEOUT) is not None  # the stream was closed: x11vnc ended


def test_the_l7r_announces_its_rfb_version_right_after_the_101() -> None:
    """Before the VNC server says anything, the L7R's first bytes after the 101 are its
    RFB 3.8 version (libvncserver then greets at once instead of after its 100 ms probe
    for a WebSocket or TLS client); a server that then speaks 3.3 is refused."""
    first: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 101 Switching\r\nUpgrade: VNC\r\n\r\n")
            await writer.drain()
            first.append(await asyncio.wait_for(reader.readexactly(12), TIMEOUT))
            writer.write(b"RFB 003.003\n")
            await writer.drain()
        finally:
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await open_vnc(
                Endpoint("127.0.0.1", port, SECRET), view_only=True, attach=False, timeout=TIMEOUT
            )
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(Unavailable, match=r"speaks RFB 3\.3; the L7R announced 3\.8"):
        asyncio.run(run())
    assert first == [b"RFB 003.008\n"]
