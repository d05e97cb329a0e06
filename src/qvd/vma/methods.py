"""The RPC method table: QVD's VMA methods, mapped onto an ``Agent``, apart from HTTP.

``dispatch`` takes a method name, its parameters and the caller's address and returns
a ``Reply`` (HTTP status and SimpleRPC body). It knows nothing of sockets; the server
module feeds it and writes the reply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from qvd.vma.simplerpc import encode_error, encode_result

__all__ = ["METHODS", "Agent", "Call", "Reply", "RpcError", "dispatch"]


class RpcError(Exception):
    """A method refused or failed; the message goes back as a SimpleRPC error."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One request: single-valued parameters (the last value of repeated keys) and all."""

    params: Mapping[str, str]
    multi: Mapping[str, list[str]]
    peer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int
    body: bytes
    after: Callable[[], None] | None = None  # work to do once the reply is sent


class Agent(Protocol):
    """What the methods act on (the session runner implements it)."""

    def x_state(self) -> str: ...

    def x_wait(self, leave: frozenset[str], timeout: float) -> str: ...

    def x_start(self, params: Mapping[str, str], peer: str) -> dict[str, object]: ...

    def x_suspend(self) -> str: ...

    def x_stop(self) -> str: ...

    def poweroff(self) -> Callable[[], None]: ...

    def expire(self, params: Mapping[str, str]) -> None: ...


def _ping(agent: Agent, call: Call) -> object:
    return None


def _x_state(agent: Agent, call: Call) -> object:
    return agent.x_state()


X_WAIT_MAX = 30.0  # seconds one x_wait call may block (a caller that wants more calls again)
X_WAIT_DEFAULT_LEAVE = frozenset({"provisioning", "starting"})


def _x_wait(agent: Agent, call: Call) -> object:
    """Block until the X state is none of ``leave`` (comma-separated x states; default
    the transitional ``provisioning,starting``) or ``timeout`` seconds (at most
    ``X_WAIT_MAX``) pass; returns the X state then. The L7R waits on this instead of
    polling ``x_state``."""
    try:
        timeout = float(call.params.get("timeout", "10"))
    except ValueError:
        raise RpcError("timeout must be a number of seconds") from None
    if not 0 <= timeout <= X_WAIT_MAX:
        raise RpcError(f"timeout must be between 0 and {X_WAIT_MAX:g} seconds")
    text = call.params.get("leave", "")
    leave = frozenset(w for w in text.split(",") if w) if text else X_WAIT_DEFAULT_LEAVE
    return agent.x_wait(leave, timeout)


def _x_start(agent: Agent, call: Call) -> object:
    return agent.x_start(call.params, call.peer)


def _x_suspend(agent: Agent, call: Call) -> object:
    return agent.x_suspend()


def _x_stop(agent: Agent, call: Call) -> object:
    return agent.x_stop()


def _expire(agent: Agent, call: Call) -> object:
    agent.expire(call.params)
    return None


METHODS: dict[str, Callable[[Agent, Call], object]] = {
    "ping": _ping,
    "x_state": _x_state,
    "x_wait": _x_wait,
    "x_start": _x_start,
    "x_suspend": _x_suspend,
    "x_stop": _x_stop,
    "expire": _expire,
}


def dispatch(agent: Agent, method: str, multi: Mapping[str, list[str]], peer: str) -> Reply:
    """Run one method; unknown → 404, ``RpcError`` → SimpleRPC error body."""
    params = {key: values[-1] for key, values in multi.items() if values}
    call = Call(params=params, multi=multi, peer=peer)
    if method == "poweroff":
        try:
            shutdown = agent.poweroff()
        except RpcError as exc:
            return Reply(status=200, body=encode_error(str(exc)))
        return Reply(status=200, body=encode_result(None), after=shutdown)
    handler = METHODS.get(method)
    if handler is None:
        return Reply(status=404, body=encode_error(f"unknown method {method!r}"))
    try:
        result = handler(agent, call)
    except RpcError as exc:
        return Reply(status=200, body=encode_error(str(exc)))
    return Reply(status=200, body=encode_result(result))
