"""A small blocking WebSocket client over TLS (wsproto), for talking to the real portal
as a browser would: it sends the ``Origin`` and ``Cookie`` headers it is given."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

__all__ = ["WsClient", "WsOutcome", "open_ws"]


@dataclass
class WsOutcome:
    """What one socket saw: accepted or the HTTP refusal, the messages, the close."""

    accepted: bool = False
    status: int = 0  # HTTP status of a refused handshake
    texts: list[dict[str, Any]] = field(default_factory=list)
    binary: list[bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    @property
    def progress(self) -> list[str]:
        return [str(t["progress"]) for t in self.texts if "progress" in t]

    @property
    def errors(self) -> list[str]:
        return [str(t["error"]) for t in self.texts if "error" in t]

    @property
    def ready(self) -> bool:
        return any(t.get("ready") for t in self.texts)


def open_ws(
    port: int,
    path: str,
    *,
    origin: str | None,
    cookie: str | None,
    timeout: float = 30.0,
    until_ready: bool = False,
    first: str | bytes | None = None,
) -> WsOutcome:
    """Open ``wss://127.0.0.1:port/path``, send ``first`` (text or binary) once accepted
    when given, and read until it closes (or, with ``until_ready``, until
    ``{"ready": true}``, then close it ourselves)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock = ctx.wrap_socket(raw)
    ws = WSConnection(ConnectionType.CLIENT)
    headers: list[tuple[bytes, bytes]] = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    outcome = WsOutcome()
    try:
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target=path, extra_headers=headers)))
        text_parts: list[str] = []
        while True:
            data = sock.recv(65536)
            if not data:
                return outcome
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    outcome.accepted = True
                    if first is not None:
                        message: Message[Any] = (
                            TextMessage(data=first)
                            if isinstance(first, str)
                            else BytesMessage(data=first)
                        )
                        sock.sendall(ws.send(message))
                elif isinstance(event, RejectConnection):
                    outcome.status = event.status_code
                    if not event.has_body:
                        return outcome
                elif isinstance(event, RejectData):
                    if event.body_finished:
                        return outcome
                elif isinstance(event, TextMessage):
                    text_parts.append(event.data)
                    if event.message_finished:
                        outcome.texts.append(json.loads("".join(text_parts)))
                        text_parts = []
                        if until_ready and outcome.texts[-1].get("ready"):
                            sock.sendall(ws.send(CloseConnection(code=1000)))
                            return outcome
                elif isinstance(event, BytesMessage):
                    outcome.binary.append(bytes(event.data))
                elif isinstance(event, Ping):
                    sock.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    outcome.close_code = event.code
                    outcome.close_reason = event.reason or ""
                    with contextlib.suppress(OSError):  # the server may be gone already
                        sock.sendall(ws.send(event.response()))
                    return outcome
    finally:
        sock.close()


class WsClient:
    """An open socket to talk on, frame by frame (a browser after ``ready``)."""

    def __init__(self, port: int, path: str, *, origin: str, cookie: str, timeout: float = 30):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []
        headers = [(b"origin", origin.encode()), (b"cookie", cookie.encode())]
        self.sock.sendall(
            self.ws.send(Request(host=f"127.0.0.1:{port}", target=path, extra_headers=headers))
        )
        event = self._next()
        if not isinstance(event, AcceptConnection):
            raise AssertionError(f"the socket was refused: {event!r}")

    def _next(self) -> Any:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the portal closed the connection")
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    def message(self) -> str | bytes | int:
        """The next whole message: text, bytes, or the close code when it closed."""
        text_parts: list[str] = []
        byte_parts: list[bytes] = []
        while True:
            event = self._next()
            if isinstance(event, TextMessage):
                text_parts.append(event.data)
                if event.message_finished:
                    return "".join(text_parts)
            elif isinstance(event, BytesMessage):
                byte_parts.append(bytes(event.data))
                if event.message_finished:
                    return b"".join(byte_parts)
            elif isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                return int(event.code)

    def read_bytes(self, count: int, buffer: bytearray) -> bytes:
        """``count`` bytes of the binary stream (messages may split or join them)."""
        while len(buffer) < count:
            got = self.message()
            if not isinstance(got, bytes):
                raise AssertionError(f"expected RFB bytes, got {got!r}")
            buffer += got
        out = bytes(buffer[:count])
        del buffer[:count]
        return out

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        self.sock.close()
