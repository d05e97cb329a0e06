"""A stand-in for the portal server in the browser tests of the viewer's JavaScript
(``src/qvd/portal/static/js``): a real desktop (an xterm on Xvfb, served by a real
x11vnc) and a small TLS server (Starlette under uvicorn) that serves the portal's static
files, noVNC from the portal's npm tree, the session page (``templates/session.html``
over a stand-in ``base.html``) and a spy page to the spy contract, and WebSockets that
speak the portal's contract: ``{"progress"}`` text frames, ``{"ready": true}``, then the
RFB bytes of x11vnc both ways (here x11vnc offers security type None itself: the L7R's
VNC authentication is the ``vnc`` engineer's, tested there).

The test drives the server side: ``Harness.close_sockets(code, error)`` ends every live
WebSocket (a takeover: 4409; a drop: 1011), ``Harness.opened`` lists each socket's path,
query and first message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from qvd.portal.web import novnc_modules
from qvd.selfsigned import self_signed, write_private
from qvd.uvserve import ClosingAwareWSProtocol
from tests.conftest import end_process, free_port

__all__ = ["CSP", "Desktop", "Harness", "Opened", "running_desktop", "running_harness"]

PORTAL = Path(__file__).resolve().parents[3] / "src/qvd/portal"
NOVNC = PORTAL / "vendor/node_modules/@novnc/novnc"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)
TICKET = "spy-ticket-0123456789abcdef"
PROGRESS = ("Starting virtual machine", "Starting X session")

# Stand-ins for templates of the portal that may not exist in this tree: the portal's
# own files come first.
BASE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · QVD</title>
<link rel="icon" href="data:,">
{% block head %}{% endblock %}
</head>
<body>
<main id="main">{% block main %}{% endblock %}</main>
</body>
</html>
"""

# To the contract of the spy engineer's spy.html (#screen's data-ticket, data-ws,
# data-view-only).
SPY_HTML = """{% extends "base.html" %}
{% block title %}Spy{% endblock %}
{% block head %}
<link rel="stylesheet" href="/static/css/session.css">
<script src="/static/js/spy.js" type="module"></script>
{% endblock %}
{% block main %}
<div class="session-bar"><output id="status" role="status">Connecting…</output></div>
<div id="screen" class="session-screen" data-ticket="{{ ticket }}" data-ws="/ws/spy"
     data-view-only="{{ 1 if view_only else 0 }}"></div>
{% endblock %}
"""

HOME_HTML = (
    '<!doctype html><html lang=en><title>Portal</title><link rel=icon href="data:,">'
    "<h1 id=home>Desktops</h1></html>"
)


@dataclass
class Desktop:
    """An X display with an xterm filling it (yellow on black: easy to find in a
    canvas), served by x11vnc on ``vnc_port``; ``env`` reaches the display; the
    xterm's shell runs in ``home``."""

    display: str
    vnc_port: int
    env: dict[str, str]
    home: Path

    def cut_text(self) -> str:
        """What a VNC client last sent as its clipboard: x11vnc writes it to the root
        window's CUT_BUFFER0 (read with xprop); "" when none."""
        done = subprocess.run(
            ["xprop", "-root", "-notype", "CUT_BUFFER0"],
            env=self.env,
            capture_output=True,
            timeout=10,
            check=False,
        )
        value = done.stdout.decode().partition(" = ")[2].strip()
        return value[1:-1] if value.startswith('"') and value.endswith('"') else ""

    def set_cut_text(self, text: str) -> None:
        """Put ``text`` in CUT_BUFFER0, as an X application copying does; x11vnc sends
        it to its clients as ServerCutText."""
        subprocess.run(
            ["xprop", "-root", "-f", "CUT_BUFFER0", "8s", "-set", "CUT_BUFFER0", text],
            env=self.env,
            timeout=10,
            check=True,
        )


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Wait until ``proc`` (x11vnc) listens on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"x11vnc ended with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"x11vnc does not listen on {port}")


@contextlib.contextmanager
def running_desktop(tmp: Path) -> Iterator[Desktop]:
    """Xvfb (1024x768), an xterm running ``sh`` in ``tmp``, x11vnc on a loopback port
    (no password, shared, forever); every process ended on exit."""
    for tool in ("Xvfb", "xterm", "x11vnc", "xprop"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: run scripts/deps-portal.sh")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        read_fd, write_fd = os.pipe()
        xvfb = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                "1024x768x24",
                "-nolisten",
                "tcp",
            ],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(xvfb)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        display = f":{number}"
        env = {**os.environ, "DISPLAY": display}
        env.pop("XAUTHORITY", None)
        procs.append(
            subprocess.Popen(
                ["xterm", "-geometry", "200x80+0+0", "-bg", "yellow", "-fg", "black",
                 "-e", "sh"],
                cwd=tmp,
                env={**env, "PS1": "$ ", "HOME": str(tmp)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        vnc_port = free_port()
        x11vnc = subprocess.Popen(
            ["x11vnc", "-display", display, "-rfbport", str(vnc_port), "-localhost",
             "-nopw", "-shared", "-forever", "-noxdamage", "-nossl",
             "-o", str(tmp / "x11vnc.log")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(x11vnc)
        _wait_port(vnc_port, x11vnc)
        yield Desktop(display, vnc_port, env, tmp)
    finally:
        for proc in reversed(procs):
            end_process(proc)


@dataclass
class Opened:
    """One WebSocket the page opened: its path, query parameters and first message."""

    path: str
    query: dict[str, str]
    first_message: str | None = None


@dataclass
class Harness:
    base: str
    desktop: Desktop
    opened: list[Opened] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    live: set[WebSocket] = field(default_factory=set)
    # The next sockets are refused with this (close code, error text), when set.
    refuse: tuple[int, str] | None = None

    def close_sockets(self, code: int, error: str = "") -> int:
        """End every live WebSocket from the server side with ``code`` (after an
        ``{"error"}`` frame when ``error`` is given); how many there were."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self._close(code, error), self.loop)
        return future.result(10)

    async def _close(self, code: int, error: str) -> int:
        sockets = list(self.live)
        for ws in sockets:
            with contextlib.suppress(Exception):
                if error:
                    await ws.send_text(json.dumps({"error": error}))
                await ws.close(code)
        return len(sockets)


class _Csp:
    """Every response carries the portal's Content-Security-Policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"content-security-policy", CSP.encode()),
                ]
            await send(message)

        await self.app(scope, receive, with_csp)


async def _relay(ws: WebSocket, vnc_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", vnc_port)

    async def to_browser() -> None:
        while data := await reader.read(65536):
            await ws.send_bytes(data)

    async def to_vnc() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes"):
                writer.write(message["bytes"])
                await writer.drain()

    tasks = [asyncio.create_task(to_browser()), asyncio.create_task(to_vnc())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _app(harness: Harness) -> Starlette:
    templates = jinja2.Environment(
        loader=jinja2.ChoiceLoader([
            jinja2.FileSystemLoader(PORTAL / "templates"),
            jinja2.DictLoader({"base.html": BASE_HTML, "spy-stand-in.html": SPY_HTML}),
        ]),
        autoescape=True,
    )  # fmt: skip
    templates.globals["novnc_modules"] = novnc_modules  # as the portal's own environment

    async def home(request: Request) -> Response:
        return HTMLResponse(HOME_HTML)

    async def session_page(request: Request) -> Response:
        vm_id = int(request.path_params["vm_id"])
        page = templates.get_template("session.html")
        return HTMLResponse(page.render(vm_id=vm_id, vm_name=f"Desktop {vm_id}"))

    async def spy_page(request: Request) -> Response:
        view_only = request.query_params.get("view_only", "1") == "1"
        # The spy engineer's spy.html when this tree has it, else the stand-in.
        page = templates.get_or_select_template(["spy.html", "spy-stand-in.html"])
        return HTMLResponse(
            page.render(vm_id=7, vm_name="Desktop 7", ticket=TICKET, view_only=view_only)
        )

    async def serve_socket(ws: WebSocket, first_message: bool) -> None:
        harness.loop = asyncio.get_running_loop()
        await ws.accept()
        opened = Opened(ws.url.path, dict(ws.query_params))
        harness.opened.append(opened)
        harness.live.add(ws)
        try:
            if first_message:
                opened.first_message = await ws.receive_text()
                if opened.first_message != TICKET:
                    await ws.send_text(json.dumps({"error": "no such spy ticket"}))
                    await ws.close(4403)
                    return
            if harness.refuse is not None:
                code, error = harness.refuse
                await ws.send_text(json.dumps({"error": error}))
                await ws.close(code)
                return
            for text in PROGRESS:
                await ws.send_text(json.dumps({"progress": text}))
            await ws.send_text(json.dumps({"ready": True}))
            await _relay(ws, harness.desktop.vnc_port)
        except WebSocketDisconnect:
            pass
        finally:
            harness.live.discard(ws)
        with contextlib.suppress(Exception):
            await ws.close(1000)

    async def desktop_socket(ws: WebSocket) -> None:
        await serve_socket(ws, first_message=False)

    async def spy_socket(ws: WebSocket) -> None:
        await serve_socket(ws, first_message=True)

    routes = [
        Route("/", home),
        Route("/desktops/{vm_id:int}", session_page),
        Route("/spy-page", spy_page),
        WebSocketRoute("/ws/desktops/{vm_id:int}", desktop_socket),
        WebSocketRoute("/ws/spy", spy_socket),
        Mount("/static", StaticFiles(directory=PORTAL / "static")),
        Mount("/vendor/novnc/core", StaticFiles(directory=NOVNC / "core")),
        Mount("/vendor/novnc/vendor/pako", StaticFiles(directory=NOVNC / "vendor/pako")),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_Csp)
    return app


@contextlib.contextmanager
def running_harness(tmp: Path, desktop: Desktop) -> Iterator[Harness]:
    """The stand-in portal on a free loopback port over TLS; stopped on exit."""
    if not (NOVNC / "core/rfb.js").exists():
        raise RuntimeError(f"{NOVNC} is missing: run scripts/deps-portal.sh")
    cert, key = self_signed(["localhost"], ["127.0.0.1"])
    write_private(tmp / "key.pem", key)
    (tmp / "cert.pem").write_bytes(cert)
    port = free_port()
    harness = Harness(f"https://127.0.0.1:{port}", desktop)
    config = uvicorn.Config(
        _app(harness),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(tmp / "cert.pem"),
        ssl_keyfile=str(tmp / "key.pem"),
        http="h11",
        ws=ClosingAwareWSProtocol,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the harness server did not start")
            time.sleep(0.02)
        yield harness
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()
