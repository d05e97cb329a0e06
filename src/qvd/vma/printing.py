"""Printing: the desktop's CUPS gets one raw queue per printer of the client's CUPS,
each pointing at the NX printing channel (``ipp://localhost:2100/printers/<name>``), and
the client's default printer becomes the desktop's.

On ``connected`` (first connect and every resume) the device makes sure the desktop's
cupsd answers (in a container the VMA is init: it starts ``cupsd -f`` with the image's
own configuration, so applications find CUPS where they always look and a
systemd-started cupsd is used as it is), asks the client's CUPS for its printers over
IPP through the channel, and adds the queues with ``lpadmin``; on ``suspended`` and
``stopped`` it removes the queues it added, and on ``stopped`` it stops the cupsd it
started.

Printer names come from the client and are hostile: a queue name is made of
``[A-Za-z0-9_.-]`` only (anything else becomes ``_``, at most 64 characters, never a
leading ``-`` or ``.``, never the name of a queue the desktop already had), the client's
own name only appears percent-encoded in the device URI, and every program gets an
argv (no shell). A client listing more than ``MAX_PRINTERS`` printers gets the first
ones. Failures are logged; the session goes on without printing.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from qvd.vma.channels import printing_port
from qvd.vma.devices import DeviceContext
from qvd.vma.ipp import (
    CUPS_GET_DEFAULT,
    CUPS_GET_PRINTERS,
    IppError,
    decode_response,
    encode_request,
)
from qvd.vma.procs import end_group

__all__ = [
    "MAX_PRINTERS",
    "ClientPrinters",
    "Printing",
    "Queue",
    "add_queue_argv",
    "client_printers",
    "default_argv",
    "plan_queues",
    "queue_name",
    "remove_queue_argv",
]

log = logging.getLogger(__name__)

MAX_PRINTERS = 32
_MAX_QUEUE_NAME = 64
_MAX_CLIENT_NAME = 127  # CUPS's own limit for a printer name
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_PRINTER_GROUP = 0x04
_IPP_TIMEOUT = 10.0  # each read
_IPP_DEADLINE = 15.0  # the whole call
_MAX_BODY = 1 << 20
_CUPSD_START_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class ClientPrinters:
    """What the client's CUPS has: printer names (raw, as it sent them) and its default."""

    names: tuple[str, ...]
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Queue:
    """A desktop queue for one client printer."""

    name: str  # safe: [A-Za-z0-9_.-]{1,64}
    uri: str  # the client printer through the NX printing channel
    default: bool = False


def _acceptable(client_name: str) -> bool:
    """A client printer name we make a queue for: printable, not empty, not too long."""
    if not client_name or len(client_name) > _MAX_CLIENT_NAME:
        return False
    return all(ch.isprintable() for ch in client_name)


def queue_name(client_name: str, taken: Iterable[str]) -> str:
    """The desktop queue name for ``client_name``: only ``[A-Za-z0-9_.-]``, no leading
    ``-`` or ``.``, at most 64 characters, and none of ``taken`` (CUPS compares names
    without case; a ``_2``, ``_3``... suffix makes it unique)."""
    base = _UNSAFE.sub("_", client_name)[:_MAX_QUEUE_NAME]
    base = re.sub(r"^[-.]+", lambda m: "_" * len(m.group()), base)
    if not base.strip("_"):
        base = "printer"
    used = {name.casefold() for name in taken}
    name, counter = base, 1
    while name.casefold() in used:
        counter += 1
        suffix = f"_{counter}"
        name = base[: _MAX_QUEUE_NAME - len(suffix)] + suffix
    return name


def plan_queues(client: ClientPrinters, existing: Iterable[str], port: int) -> list[Queue]:
    """The queues to add for ``client``'s printers, none named like ``existing`` (the
    queues the desktop has that are not this session's)."""
    taken = set(existing)
    queues: list[Queue] = []
    seen: set[str] = set()
    for client_name in client.names:
        if len(queues) >= MAX_PRINTERS:
            log.warning("printing: the client has more than %d printers", MAX_PRINTERS)
            break
        if client_name in seen or not _acceptable(client_name):
            continue
        seen.add(client_name)
        name = queue_name(client_name, taken)
        taken.add(name)
        uri = f"ipp://localhost:{port}/printers/{quote(client_name, safe='')}"
        queues.append(Queue(name=name, uri=uri, default=client_name == client.default))
    return queues


def add_queue_argv(lpadmin: str, server: str, queue: Queue) -> list[str]:
    """``lpadmin`` adding ``queue`` as a raw, enabled, unshared queue."""
    return [lpadmin, "-h", server, "-p", queue.name, "-v", queue.uri,
            "-o", "printer-is-shared=false", "-E"]  # fmt: skip


def default_argv(lpadmin: str, server: str, queue: Queue) -> list[str]:
    return [lpadmin, "-h", server, "-d", queue.name]


def remove_queue_argv(lpadmin: str, server: str, name: str) -> list[str]:
    return [lpadmin, "-h", server, "-x", name]


# ---- IPP over HTTP (the only network I/O of the module) ------------------------------------
class _UnixConnection(http.client.HTTPConnection):
    """HTTP to CUPS's unix socket (``Host: localhost``, which cupsd accepts)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection(server: str) -> http.client.HTTPConnection:
    """A connection to ``server``: a unix socket path or ``host:port``. Over TCP the Host
    header is the address itself (cupsd accepts only localhost or 127.0.0.1 from a
    loopback peer: nxproxy)."""
    if server.startswith("/"):
        return _UnixConnection(server, _IPP_TIMEOUT)
    host, _, port = server.rpartition(":")
    return http.client.HTTPConnection(host, int(port), timeout=_IPP_TIMEOUT)


def _cut(conn: http.client.HTTPConnection) -> None:
    """End a call that overran its deadline (a blocked read returns at once)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _ipp(server: str, operation: int, requested: list[str]) -> dict[str, list[list[str | bytes]]]:
    """``operation`` sent to ``server``: the values of ``requested`` in each printer group.
    The whole call has ``_IPP_DEADLINE`` seconds: a client that answers a byte at a time
    does not hold the devices' thread."""
    conn = _connection(server)
    deadline = threading.Timer(_IPP_DEADLINE, _cut, args=(conn,))
    try:
        conn.connect()
        deadline.start()
        conn.request("POST", "/", body=encode_request(operation, 1, requested),
                     headers={"Content-Type": "application/ipp"})  # fmt: skip
        response = conn.getresponse()
        body = response.read(_MAX_BODY + 1)
    finally:
        deadline.cancel()
        conn.close()
    if response.status != 200:
        raise IppError(f"HTTP {response.status} from {server}")
    if len(body) > _MAX_BODY:
        raise IppError(f"the answer of {server} is over {_MAX_BODY} bytes")
    answer = decode_response(body)
    if not answer.ok and answer.status != 0x0406:  # client-error-not-found: no printers
        raise IppError(f"IPP status 0x{answer.status:04x} from {server}")
    return {name: answer.values(_PRINTER_GROUP, name) for name in requested}


def _names(groups: list[list[str | bytes]]) -> list[str]:
    return [str(values[0]) for values in groups if values and isinstance(values[0], str)]


def client_printers(server: str) -> ClientPrinters:
    """The printers of the CUPS at ``server`` (IPP CUPS-Get-Printers, CUPS-Get-Default)."""
    names = _names(_ipp(server, CUPS_GET_PRINTERS, ["printer-name"])["printer-name"])
    defaults = _names(_ipp(server, CUPS_GET_DEFAULT, ["printer-name"])["printer-name"])
    return ClientPrinters(names=tuple(names), default=defaults[0] if defaults else None)


def _answers(server: str) -> bool:
    family = socket.AF_UNIX if server.startswith("/") else socket.AF_INET
    host, _, port = server.rpartition(":")
    address: str | tuple[str, int] = server if family == socket.AF_UNIX else (host, int(port))
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )  # fmt: skip


class Printing:
    """The printing device (see the module's docstring)."""

    name = "printing"

    def __init__(self) -> None:
        self._queues: list[str] = []  # the queues this session added, by name
        self._cupsd: subprocess.Popen[bytes] | None = None

    def session_env(self, ctx: DeviceContext) -> dict[str, str]:
        return {}

    def connected(self, ctx: DeviceContext) -> None:
        server = ctx.setting("vma.printing.cups.server")
        self._remove_queues(ctx, server)  # a connect after a connect: start afresh
        if not ctx.plan.printing:
            return
        if not self._ensure_cupsd(ctx, server):
            return
        port = printing_port(ctx.display)
        try:
            client = client_printers(f"127.0.0.1:{port}")
            existing = _names(_ipp(server, CUPS_GET_PRINTERS, ["printer-name"])["printer-name"])
        except (OSError, IppError, http.client.HTTPException) as exc:
            log.warning("printing: no printer list: %s", exc)
            return
        lpadmin = ctx.setting("command.lpadmin")
        for queue in plan_queues(client, existing, port):
            if not self._lpadmin(add_queue_argv(lpadmin, server, queue)):
                continue
            self._queues.append(queue.name)
            if queue.default:
                self._lpadmin(default_argv(lpadmin, server, queue))
        log.info("printing: %d client printers, queues %s", len(client.names), self._queues)

    def suspended(self, ctx: DeviceContext) -> None:
        self._remove_queues(ctx, ctx.setting("vma.printing.cups.server"))

    def stopped(self, ctx: DeviceContext) -> None:
        self._remove_queues(ctx, ctx.setting("vma.printing.cups.server"))
        cupsd, self._cupsd = self._cupsd, None
        if cupsd is not None:
            end_group(cupsd, grace=10.0)

    def _remove_queues(self, ctx: DeviceContext, server: str) -> None:
        lpadmin = ctx.setting("command.lpadmin")
        while self._queues:
            self._lpadmin(remove_queue_argv(lpadmin, server, self._queues.pop()))

    def _lpadmin(self, argv: list[str]) -> bool:
        try:
            done = _run(argv)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("printing: %s: %s", argv[0], exc)
            return False
        if done.returncode != 0:
            log.warning("printing: %s %s: %s", argv[0], argv[3:5], done.stderr.strip()[:500])
            return False
        return True

    def _ensure_cupsd(self, ctx: DeviceContext, server: str) -> bool:
        """The desktop's cupsd answers at ``server``; started (``cupsd -f``, the image's
        configuration) when nothing does."""
        if _answers(server):
            return True
        if self._cupsd is None or self._cupsd.poll() is not None:
            command = ctx.setting("command.cupsd")
            try:
                with (ctx.log_dir / "cupsd.log").open("ab") as output:
                    self._cupsd = subprocess.Popen(
                        [command, "-f"], stdin=subprocess.DEVNULL, stdout=output,
                        stderr=output, start_new_session=True,
                    )  # fmt: skip
            except OSError as exc:
                log.warning("printing: cannot start %s: %s", command, exc)
                return False
        deadline = time.monotonic() + _CUPSD_START_TIMEOUT
        while time.monotonic() < deadline:
            if _answers(server):
                return True
            if self._cupsd.poll() is not None:
                break
            time.sleep(0.05)
        log.warning("printing: the desktop's cupsd does not answer at %s", server)
        return False
