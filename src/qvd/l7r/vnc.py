"""The L7R's side of a browser session: the VMA's ``vnc_connect`` and the byte bridge.

``open_vnc`` checks the route to the VM (the network rule), asks its VMA for
``GET /vma/vnc_connect`` with the VMA secret and a fresh one-time VNC password
(``secrets``; it travels in a header, is never logged and is used once), reads the
``101`` and answers x11vnc's VNC authentication (``rfb.VncAuthClient``). The stream it
returns is positioned right after the server's SecurityResult OK: the next bytes the
server expects are the client's ClientInit.

``bridge`` greets the browser as an RFB 3.8 server offering security type None
(``rfb.BrowserGreeting``; the portal authenticated the browser), then relays bytes
both ways until either side ends, and closes the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
import urllib.parse
from dataclasses import dataclass, field
from typing import Protocol

from qvd.l7r.errors import L7rError, RequestError, Unavailable
from qvd.l7r.relay import CHUNK, check_route
from qvd.l7r.rfb import BrowserGreeting, RfbError, VncAuthClient

__all__ = [
    "GREETING_TIMEOUT",
    "MAX_HEAD",
    "ByteChannel",
    "Conflict",
    "Endpoint",
    "VncStream",
    "bridge",
    "one_time_password",
    "open_vnc",
]

MAX_HEAD = 16 * 1024  # bytes of the VMA's response head
MAX_BODY = 4 * 1024  # bytes of a refusal's reason we read
GREETING_TIMEOUT = 30.0  # seconds for the browser's side of the RFB handshake
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


class Conflict(RequestError):
    """The VM's X session is not in a state that allows this (409, the VMA's reason)."""

    status = 409


class Endpoint(Protocol):
    """How to reach a VM's VMA (``qvd.l7r.flow.VmaEndpoint``)."""

    @property
    def address(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def secret(self) -> bytes: ...


class ByteChannel(Protocol):
    """What a WebSocket is to the bridge: binary messages in and out."""

    async def receive(self) -> bytes | None:
        """The next message; None once the channel is closed."""

    async def send(self, data: bytes) -> None: ...


@dataclass(slots=True)
class VncStream:
    """An authenticated RFB stream to the VM's x11vnc, before ClientInit."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: bytes = field(default=b"")  # server bytes read past the handshake

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


def one_time_password() -> str:
    """8 random letters and digits (VNC authentication uses at most 8 bytes)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(8))


def _request_head(
    endpoint: Endpoint, *, view_only: bool, attach: bool, password: str, notice: str
) -> bytes:
    query = urllib.parse.urlencode({"view_only": int(view_only), "attach": int(attach)})
    lines = [
        f"GET /vma/vnc_connect?{query} HTTP/1.1",
        f"Host: {endpoint.address}:{endpoint.port}",
        f"Authorization: Bearer {endpoint.secret.decode('ascii')}",
        "Connection: Upgrade",
        "Upgrade: VNC",
        f"X-QVD-VNC-Password: {password}",
    ]
    if notice:
        if not notice.isprintable() or len(notice) > 200:
            raise ValueError("the spy notice must be at most 200 printable characters")
        lines.append(f"X-QVD-Spy-Notice: {notice}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the (lower-cased) headers of an HTTP/1.1 response head."""
    try:
        text = head.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        version, status_text, *_ = status_line.split(" ", 2)
        status = int(status_text)
    except (ValueError, UnicodeDecodeError):
        raise Unavailable("the VM's agent sent a malformed answer to vnc_connect") from None
    if not version.startswith("HTTP/1."):
        raise Unavailable("the VM's agent sent a malformed answer to vnc_connect")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise Unavailable("the VM's agent sent a malformed header to vnc_connect")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The response head (without the blank line) and any bytes read after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(4096)
        if not chunk:
            raise Unavailable("the VM's agent closed the connection before answering")
        data += chunk
        if len(data) > MAX_HEAD and b"\r\n\r\n" not in data[:MAX_HEAD]:
            raise Unavailable("the VM's agent sent an oversized answer to vnc_connect")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def _refusal(
    status: int, headers: dict[str, str], rest: bytes, reader: asyncio.StreamReader
) -> L7rError:
    try:
        length = min(int(headers.get("content-length", "0")), MAX_BODY)
    except ValueError:
        length = 0
    body = rest[:length]
    with contextlib.suppress(asyncio.IncompleteReadError, OSError):
        if len(body) < length:
            body += await reader.readexactly(length - len(body))
    reason = body.decode("utf-8", "replace").strip() or f"status {status}"
    if status == 409:
        return Conflict(reason)
    if status in (401, 403):
        return Unavailable(f"the VM's agent refused the L7R ({reason})")
    return Unavailable(f"the VM's agent refused vnc_connect: {reason}")


async def open_vnc(
    endpoint: Endpoint,
    *,
    view_only: bool,
    attach: bool,
    notice: str = "",
    timeout: float,
) -> VncStream:
    """An authenticated RFB stream to the VM's x11vnc (see the module doc).

    Raises ``Conflict`` (409: the X session's state), ``Unavailable`` (no route, no
    answer, a refusal, a failed handshake) with the reason.
    """
    await asyncio.to_thread(check_route, endpoint.address)
    password = one_time_password()
    head = _request_head(
        endpoint, view_only=view_only, attach=attach, password=password, notice=notice
    )
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(endpoint.address, endpoint.port, limit=CHUNK), timeout
        )
    except (TimeoutError, OSError) as exc:
        raise Unavailable(f"cannot reach the VM's agent: {exc or 'timed out'}") from None
    try:
        stream = await asyncio.wait_for(_upgrade(reader, writer, head, password), timeout)
    except TimeoutError:
        writer.close()
        raise Unavailable("the VM's VNC server did not answer in time") from None
    except BaseException:
        writer.close()
        raise
    return stream


async def _upgrade(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, password: str
) -> VncStream:
    writer.write(head)
    await writer.drain()
    response, rest = await _read_head(reader)
    status, headers = _parse_head(response)
    if status != 101:
        raise await _refusal(status, headers, rest, reader)
    if headers.get("upgrade", "").lower() != "vnc":
        raise Unavailable("the VM's agent did not switch to VNC")
    client = VncAuthClient(password, early=True)  # x11vnc greets at once (see rfb)
    writer.write(client.initial())
    data = rest
    try:
        while True:
            if data:
                answer = client.feed(data)
                if answer:
                    writer.write(answer)
                    await writer.drain()
                if client.done:
                    return VncStream(reader=reader, writer=writer, pending=client.leftover)
            data = await reader.read(4096)
            if not data:
                raise Unavailable("the VM's VNC server closed the connection during the handshake")
    except RfbError as exc:
        raise Unavailable(f"VNC handshake with the VM failed: {exc}") from None


async def _greet(channel: ByteChannel) -> bytes:
    """The browser's handshake; returns its bytes past it (ClientInit, maybe more)."""
    greeting = BrowserGreeting()
    await channel.send(greeting.initial())
    while not greeting.done:
        data = await channel.receive()
        if data is None:
            raise Unavailable("the browser left during the RFB handshake")
        answer = greeting.feed(data)
        if answer:
            await channel.send(answer)
    return greeting.leftover


async def bridge(
    channel: ByteChannel, stream: VncStream, *, greeting_timeout: float = GREETING_TIMEOUT
) -> None:
    """Greet the browser, then relay both ways until either side ends. A browser that
    does not finish the handshake within ``greeting_timeout`` seconds is dropped (it
    would hold the VM's x11vnc, and for a browser session the in-VM viewer)."""
    try:
        try:
            leftover = await asyncio.wait_for(_greet(channel), greeting_timeout)
        except RfbError as exc:
            raise Unavailable(f"the browser's RFB handshake failed: {exc}") from None
        except TimeoutError:
            raise Unavailable("the browser did not finish the RFB handshake in time") from None
        if leftover:
            stream.writer.write(leftover)
            await stream.writer.drain()
        if stream.pending:
            await channel.send(stream.pending)
        await _relay(channel, stream)
    finally:
        await stream.close()


async def _relay(channel: ByteChannel, stream: VncStream) -> None:
    async def upstream() -> None:  # browser → VM
        while (data := await channel.receive()) is not None:
            stream.writer.write(data)
            await stream.writer.drain()

    async def downstream() -> None:  # VM → browser
        while data := await stream.reader.read(CHUNK):
            await channel.send(data)

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, (OSError, ConnectionError)):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await task
