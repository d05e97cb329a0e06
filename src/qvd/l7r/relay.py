"""After the 101: the route check, the connection to nxagent, and the byte relay.

nxagent is dialled only after the client's first bytes have arrived: an agent whose
connection closes before the NX greeting ends its X session, so a client that leaves
right after the 101 must not cost the user their desktop. Those first bytes go
through ``GreetingRewriter`` (the NX cookie, see ``nxcookie``); the rest is copied
both ways in 256 KiB reads until either side closes, or the session is cancelled
(takeover, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import Callable

from qvd.l7r.errors import Unavailable
from qvd.l7r.iproute import route_problem
from qvd.l7r.nxcookie import GreetingRewriter, NotNx

__all__ = ["CHUNK", "GREETING_TIMEOUT", "check_route", "first_bytes", "open_agent", "relay"]

CHUNK = 256 * 1024
Count = Callable[[int], None]  # told the size of each chunk relayed (qvd.l7r.metrics)


def _uncounted(size: int) -> None:
    return None


GREETING_TIMEOUT = 30.0  # seconds from the 101 to the client's first NX bytes


def check_route(address: str) -> None:
    """Refuse addresses that are not on a link of this machine (blocking)."""
    done = subprocess.run(
        ["ip", "-o", "route", "get", address], capture_output=True, text=True, check=False
    )
    problem = route_problem(address, done.stdout if done.returncode == 0 else done.stderr)
    if problem is not None:
        raise Unavailable(f"refusing to relay to the VM: {problem}")


async def first_bytes(reader: asyncio.StreamReader, trailing: bytes, timeout: float) -> bytes:
    """The client's first bytes after the 101 (``trailing`` if it sent them along with
    its request); empty if it closed or stayed silent for ``timeout`` seconds."""
    if trailing:
        return trailing
    try:
        return await asyncio.wait_for(reader.read(CHUNK), timeout)
    except (OSError, TimeoutError):
        return b""


async def open_agent(
    address: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, limit=CHUNK), timeout
        )
    except (OSError, TimeoutError) as exc:
        raise Unavailable(f"cannot reach the X session at {address}:{port}: {exc}") from None
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return reader, writer


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    rewriter: GreetingRewriter | None = None,
    count: Count = _uncounted,
) -> None:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            break
        count(len(data))
        if rewriter is not None and not rewriter.done:
            data = rewriter.feed(data)
            if not data:
                continue
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    agent: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    *,
    cookie: str,
    trailing: bytes,
    count_in: Count = _uncounted,
    count_out: Count = _uncounted,
) -> None:
    """Copy bytes until one side ends; the greeting gets ``cookie`` (if any);
    ``count_in``/``count_out`` are told the size of each chunk from / to the client."""
    rewriter = GreetingRewriter(cookie) if cookie else None
    if trailing:
        first = rewriter.feed(trailing) if rewriter is not None else trailing
        count_in(len(trailing))
        if first:
            agent[1].write(first)
    up = asyncio.ensure_future(_pump(client[0], agent[1], rewriter, count_in))
    down = asyncio.ensure_future(_pump(agent[0], client[1], count=count_out))
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, OSError | NotNx):
                raise exc
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(BaseException):
                await task
