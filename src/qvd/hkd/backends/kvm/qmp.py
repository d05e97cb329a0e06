"""A small QMP client: QEMU's JSON machine protocol on a unix socket.

:class:`QmpProtocol` holds the protocol and does no I/O: the caller feeds it the bytes
QEMU sent and asks for the bytes to send. QMP is line-delimited JSON: QEMU greets
(``{"QMP": ...}``), the client leaves negotiation with ``qmp_capabilities``, then each
command gets one ``return`` or ``error``; asynchronous ``event`` messages (``SHUTDOWN``,
``POWERDOWN`` ...) may arrive between them and are kept apart. :class:`QmpClient` does
the socket I/O around it, with one deadline per call.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["QmpClient", "QmpError", "QmpProtocol", "QmpReply"]

_MAX_LINE = 1 << 20  # a reply longer than this is not QEMU talking


class QmpError(Exception):
    """The QMP peer is unreachable, misbehaves, or refused a command."""


class _Phase(Enum):
    GREETING = "greeting"  # waiting for {"QMP": ...}
    NEGOTIATING = "negotiating"  # qmp_capabilities sent
    READY = "ready"


@dataclass(frozen=True, slots=True)
class QmpReply:
    """The answer to one command: ``value`` on success, ``error`` (QEMU's ``desc``)
    otherwise."""

    value: Any = None
    error: str | None = None


@dataclass
class QmpProtocol:
    """QMP without I/O: ``receive(data)`` parses what QEMU sent, ``command`` frames a
    request, ``next_reply`` hands out answers in order, ``events`` accumulates events."""

    phase: _Phase = _Phase.GREETING
    greeting: Mapping[str, Any] | None = None
    events: list[Mapping[str, Any]] = field(default_factory=list)
    _buffer: bytes = b""
    _replies: list[QmpReply] = field(default_factory=list)
    _pending: int = 0

    def receive(self, data: bytes) -> None:
        if not data:
            raise QmpError("QEMU closed the QMP connection")
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            if line.strip():
                self._message(line)
        if len(self._buffer) > _MAX_LINE:
            raise QmpError("QMP message too long")

    def _message(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            raise QmpError("QMP sent something that is not JSON") from None
        if not isinstance(message, dict):
            raise QmpError("QMP sent a JSON value that is not an object")
        if self.phase is _Phase.GREETING:
            if "QMP" not in message:
                raise QmpError("QMP did not greet")
            self.greeting = message["QMP"]
            self.phase = _Phase.NEGOTIATING
            return
        if "event" in message:
            self.events.append(message)
            return
        if "return" in message or "error" in message:
            if self._pending == 0:
                raise QmpError("QMP answered a command that was not sent")
            self._pending -= 1
            if "error" in message:
                error = message["error"]
                desc = error.get("desc", "error") if isinstance(error, dict) else str(error)
                self._replies.append(QmpReply(error=str(desc)))
            else:
                self._replies.append(QmpReply(value=message["return"]))
            return
        raise QmpError("QMP sent a message of an unknown kind")

    def negotiate(self) -> bytes:
        """The ``qmp_capabilities`` request that leaves negotiation (after the greeting)."""
        if self.phase is not _Phase.NEGOTIATING or self._pending:
            raise QmpError("QMP: negotiation out of order")
        return self._frame("qmp_capabilities", None)

    def command(self, name: str, arguments: Mapping[str, Any] | None = None) -> bytes:
        if self.phase is _Phase.GREETING:
            raise QmpError("QMP: a command before the greeting")
        return self._frame(name, arguments)

    def _frame(self, name: str, arguments: Mapping[str, Any] | None) -> bytes:
        request: dict[str, Any] = {"execute": name}
        if arguments:
            request["arguments"] = dict(arguments)
        self._pending += 1
        return json.dumps(request).encode() + b"\n"

    def next_reply(self) -> QmpReply | None:
        """The oldest answer not handed out yet (None: none arrived)."""
        if not self._replies:
            return None
        reply = self._replies.pop(0)
        if self.phase is _Phase.NEGOTIATING:
            if reply.error is not None:
                raise QmpError(f"QMP refused qmp_capabilities: {reply.error}")
            self.phase = _Phase.READY
        return reply


class QmpClient:
    """One QMP connection to a QEMU's socket; ``with QmpClient(path) as qmp:``."""

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.protocol = QmpProtocol()
        self._sock: socket.socket | None = None

    def __enter__(self) -> QmpClient:
        self.connect()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise QmpError(f"QMP socket {self.path}: {exc.strerror or exc}") from None
        self._sock = sock
        deadline = time.monotonic() + self.timeout
        try:
            while self.protocol.greeting is None:
                self._read(deadline)
            self._send(self.protocol.negotiate())
            self._wait_reply(deadline)
        except BaseException:
            self.close()
            raise

    def execute(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Run a command and return its value; a refusal raises :class:`QmpError`."""
        deadline = time.monotonic() + self.timeout
        self._send(self.protocol.command(name, arguments))
        reply = self._wait_reply(deadline)
        if reply.error is not None:
            raise QmpError(f"QMP {name}: {reply.error}")
        return reply.value

    def _wait_reply(self, deadline: float) -> QmpReply:
        while (reply := self.protocol.next_reply()) is None:
            self._read(deadline)
        return reply

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise QmpError("QMP: not connected")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise QmpError(f"QMP socket {self.path}: {exc.strerror or exc}") from None

    def _read(self, deadline: float) -> None:
        if self._sock is None:
            raise QmpError("QMP: not connected")
        left = deadline - time.monotonic()
        if left <= 0:
            raise QmpError(f"QMP socket {self.path}: no answer in {self.timeout:g} s")
        self._sock.settimeout(left)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            raise QmpError(f"QMP socket {self.path}: no answer in {self.timeout:g} s") from None
        except OSError as exc:
            raise QmpError(f"QMP socket {self.path}: {exc.strerror or exc}") from None
        self.protocol.receive(data)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
