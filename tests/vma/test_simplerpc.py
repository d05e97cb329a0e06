"""SimpleRPC encoding both ways, and the method table apart from HTTP."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from qvd.vma.client import VmaRpcError, parse_simplerpc
from qvd.vma.methods import RpcError, dispatch
from qvd.vma.simplerpc import (
    RemoteError,
    decode_response,
    encode_error,
    encode_result,
    parse_target,
)


def test_results_and_errors_round_trip() -> None:
    assert decode_response(encode_result("listening")) == "listening"
    assert decode_response(encode_result(None)) is None
    assert decode_response(encode_result({"cookie": "ab"})) == {"cookie": "ab"}
    assert encode_error('bad "x"') == b'"","bad \\"x\\""'
    with pytest.raises(RemoteError, match='bad "x"'):
        decode_response(encode_error('bad "x"'))
    with pytest.raises(VmaRpcError, match="nope"):
        parse_simplerpc(b'"","nope"')
    with pytest.raises(RemoteError, match="malformed"):
        decode_response(b"1,2,3")


def test_targets_and_repeated_keys() -> None:
    assert parse_target("/vma/x_start?a=1&b=%2F&a=2&e=") == (
        "x_start",
        {"a": ["1", "2"], "b": ["/"], "e": [""]},
    )
    assert parse_target("/vma/ping") == ("ping", {})
    assert parse_target("/other/ping") is None
    assert parse_target("/vma/") is None


class RecordingAgent:
    """Stands in for the session runner in this unit test of the method table."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.refuse = False

    def x_state(self) -> str:
        return "stopped"

    def x_wait(self, leave: frozenset[str], timeout: float) -> str:
        self.calls.append(("x_wait", (sorted(leave), timeout)))
        return "listening"

    def x_start(self, params: Mapping[str, str], peer: str) -> dict[str, object]:
        if self.refuse:
            raise RpcError("session is starting")
        self.calls.append(("x_start", (dict(params), peer)))
        return {"x_state": "provisioning"}

    def x_suspend(self) -> str:
        return "connected"

    def x_stop(self) -> str:
        return "stopping"

    def poweroff(self) -> Callable[[], None]:
        return lambda: self.calls.append(("poweroff", None))

    def expire(self, params: Mapping[str, str]) -> None:
        self.calls.append(("expire", dict(params)))


def test_dispatch_maps_names_to_the_agent() -> None:
    agent = RecordingAgent()
    reply = dispatch(agent, "x_start", {"a": ["1", "2"]}, "10.0.0.1")
    assert (reply.status, decode_response(reply.body)) == (200, {"x_state": "provisioning"})
    assert agent.calls == [("x_start", ({"a": "2"}, "10.0.0.1"))]
    assert decode_response(dispatch(agent, "ping", {}, "x").body) is None
    assert decode_response(dispatch(agent, "x_state", {}, "x").body) == "stopped"
    assert dispatch(agent, "nope", {}, "x").status == 404


def test_refusals_become_simplerpc_errors() -> None:
    agent = RecordingAgent()
    agent.refuse = True
    reply = dispatch(agent, "x_start", {}, "x")
    assert reply.status == 200
    with pytest.raises(RemoteError, match="starting"):
        decode_response(reply.body)


def test_poweroff_answers_first_and_acts_after() -> None:
    agent = RecordingAgent()
    reply = dispatch(agent, "poweroff", {}, "x")
    assert reply.status == 200
    assert agent.calls == []
    assert reply.after is not None
    reply.after()
    assert agent.calls == [("poweroff", None)]


def test_x_wait_takes_the_states_to_leave_and_a_bounded_timeout() -> None:
    agent = RecordingAgent()
    reply = dispatch(agent, "x_wait", {"leave": ["starting,resuming"], "timeout": ["2.5"]}, "x")
    assert decode_response(reply.body) == "listening"
    assert agent.calls == [("x_wait", (["resuming", "starting"], 2.5))]
    reply = dispatch(agent, "x_wait", {}, "x")  # the transitional states by default
    assert agent.calls[-1] == ("x_wait", (["provisioning", "starting"], 10.0))
    for bad in ("-1", "31", "soon"):
        reply = dispatch(agent, "x_wait", {"timeout": [bad]}, "x")
        with pytest.raises(RemoteError, match="timeout must be"):
            decode_response(reply.body)
    assert len(agent.calls) == 2
