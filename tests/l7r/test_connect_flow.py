"""The connect flow's driver (``flow.py``) and the portal's operations on a real
PostgreSQL and the real VMA RPC server of the lab (tests/l7r/conftest.py), called as
the portal calls them: through the L7R's core."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from sqlalchemy import text

from qvd.l7r.auth import Principal
from qvd.l7r.connect import Aborted
from qvd.l7r.errors import NotFound, Unavailable
from qvd.l7r.flow import ConnectFlow, Target
from qvd.vma.client import VmaClient
from tests.l7r.auth.test_tokens import play_hkd_stop
from tests.l7r.conftest import Lab

BASIC = "Basic " + base64.b64encode(b"alice:secret").decode()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def flow_of(lab: Lab) -> ConnectFlow:
    assert lab.server.core is not None
    return lab.server.core.flow


def alice(lab: Lab) -> Principal:
    assert lab.server.core is not None
    return lab.server.core.node.login({"authorization": BASIC}, "127.0.0.1")


def runtime_row(lab: Lab, vm_id: int) -> tuple[str, str | None, int | None, str, int | None]:
    with lab.engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT vm_state, vm_cmd, host_id, user_state, l7r_host_id FROM vm_runtimes "
                " WHERE vm_id = :v"
            ),
            {"v": vm_id},
        ).one()
    return (row[0], row[1], row[2], row[3], row[4])


def sql(lab: Lab, statement: str, **params: object) -> None:
    with lab.engine.begin() as conn:
        conn.execute(text(statement), params)


def connect(
    lab: Lab,
    pool: ThreadPoolExecutor,
    cancelled: threading.Event,
    texts: list[str],
    **kwargs: object,
) -> Future[Target]:
    flow, principal, vm = flow_of(lab), alice(lab), lab.seed.vm_id
    params: Mapping[str, str] = {"qvd.client.geometry": "800x600"}
    return pool.submit(
        lambda: flow.connect(
            principal, vm, params, user_ip="127.0.0.1", progress=texts.append,
            cancelled=cancelled, **kwargs,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def wait_for(condition: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_vnc_connect_waits_on_x_wait_and_hands_over_the_vmas_endpoint(
    lab: Lab, pool: ThreadPoolExecutor
) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    answers = iter(["starting", "provisioning", "listening"])
    waits: list[tuple[frozenset[str], float]] = []

    def x_wait(leave: frozenset[str], timeout: float) -> str:
        waits.append((leave, timeout))
        return next(answers)

    polls: list[str] = []

    def x_state() -> str:
        polls.append("x_state")
        return "starting"

    lab.agent.x_wait = x_wait  # type: ignore[method-assign]
    lab.agent.x_state = x_state  # type: ignore[method-assign]
    texts: list[str] = []
    target = connect(lab, pool, threading.Event(), texts, transport="vnc").result(30)
    assert polls == [], "the flow never polls x_state"
    assert [leave for leave, _ in waits] == [frozenset({"provisioning", "starting"})] * 3
    assert all(0 < timeout <= 1.0 for _, timeout in waits)
    assert texts[-1] == f"Connecting X session for VM_ID: {vm}"
    assert (target.vm_id, target.address, target.port) == (vm, "127.0.0.1", lab.nx.port)
    assert (target.vma.address, target.vma.port) == ("127.0.0.1", lab.vma_port)
    assert lab.agent.starts[-1]["qvd.client.transport"] == "vnc"  # the VMA's viewer attaches
    VmaClient(target.vma.address, secret=target.vma.secret, port=target.vma.port).ping()
    for secret in (target.vma.secret.decode(), target.slave_key, target.cookie):
        assert secret not in repr(target), "no secret in a log line of the target"
    assert runtime_row(lab, vm)[3:] == ("connecting", lab.seed.host_id)
    flow_of(lab).release(vm)


def test_a_client_leaving_while_the_vm_starts_frees_the_session(
    lab: Lab, pool: ThreadPoolExecutor
) -> None:
    vm = lab.seed.vm_id
    cancelled, texts = threading.Event(), []
    future = connect(lab, pool, cancelled, texts)
    wait_for(lambda: "Waiting for VM to reach state 'running'" in texts, "the start")
    cancelled.set()
    with pytest.raises(Unavailable, match=r"^the client went away$") as caught:
        future.result(30)
    assert not isinstance(caught.value, Aborted)
    assert runtime_row(lab, vm)[3:] == ("disconnected", None)


def test_an_abort_while_waiting_for_x_says_taken_over(lab: Lab, pool: ThreadPoolExecutor) -> None:
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    in_wait = threading.Event()

    def x_wait(leave: frozenset[str], timeout: float) -> str:
        in_wait.set()
        time.sleep(timeout)
        return "starting"

    lab.agent.x_wait = x_wait  # type: ignore[method-assign]
    cancelled: threading.Event = threading.Event()
    future = connect(lab, pool, cancelled, [])
    assert in_wait.wait(20)
    # what another client's takeover does: user_cmd = abort, and the L7R's abort
    sql(lab, "UPDATE vm_runtimes SET user_cmd = 'abort' WHERE vm_id = :v", v=vm)
    cancelled.set()
    with pytest.raises(Aborted, match="taken over by another client"):
        future.result(30)
    assert runtime_row(lab, vm)[3:] == ("disconnected", None)


def test_a_second_connect_on_this_node_takes_over_a_session_not_yet_registered(
    lab: Lab, pool: ThreadPoolExecutor
) -> None:
    """Between a connect's acquire and its caller's registration (``on_acquired``) the
    session is still this node's: a second connect here asks it to let go (a takeover)
    instead of releasing it as left by a crash."""
    vm = lab.seed.vm_id
    first_texts: list[str] = []
    first = connect(lab, pool, threading.Event(), first_texts)  # never registers
    wait_for(lambda: "Waiting for VM to reach state 'running'" in first_texts, "the first")
    second_cancelled, second_texts = threading.Event(), []
    second = connect(lab, pool, second_cancelled, second_texts)
    with pytest.raises(Aborted, match="taken over by another client"):
        first.result(30)
    wait_for(lambda: f"Session acquired for VM_ID: {vm}" in second_texts, "the second")
    assert f"Aborting contending session for VM_ID: {vm}" in second_texts
    second_cancelled.set()
    with pytest.raises(Unavailable):
        second.result(30)
    assert runtime_row(lab, vm)[3:] == ("disconnected", None)


def test_start_vm_follows_the_shared_rules(lab: Lab) -> None:
    flow, principal, vm = flow_of(lab), alice(lab), lab.seed.vm_id
    assert flow.start_vm(principal, vm) == "Starting virtual machine"
    assert runtime_row(lab, vm)[:3] == ("stopped", "start", lab.seed.host_id)
    assert runtime_row(lab, vm)[3] == "disconnected", "no session taken"
    assert flow.start_vm(principal, vm) == f"VM {vm} is about to start"
    lab.run_vm(vm)
    assert flow.start_vm(principal, vm) == f"VM {vm} is already running"
    sql(lab, "UPDATE vm_runtimes SET vm_state = 'stopping' WHERE vm_id = :v", v=vm)
    with pytest.raises(Unavailable, match="is stopping; start it once it has stopped"):
        flow.start_vm(principal, vm)
    sql(lab, "UPDATE vm_runtimes SET vm_state = 'zombie' WHERE vm_id = :v", v=vm)
    with pytest.raises(Unavailable, match="is zombie; an administrator must look at it"):
        flow.start_vm(principal, vm)
    with pytest.raises(NotFound):
        flow.start_vm(principal, lab.seed.other_vm)


def test_no_host_for_start_vm(lab: Lab) -> None:
    sql(lab, "UPDATE host_runtimes SET blocked = true")
    with pytest.raises(Unavailable, match=r"Unable to assign VM .* no backend host is running"):
        flow_of(lab).start_vm(alice(lab), lab.seed.vm_id)


def test_stop_vm_takes_back_a_start_not_claimed(lab: Lab) -> None:
    flow, principal, vm = flow_of(lab), alice(lab), lab.seed.vm_id
    flow.start_vm(principal, vm)
    texts: list[str] = []
    assert flow.stop_vm(principal, vm, texts.append) == "Machine stopped"
    assert texts == []
    assert runtime_row(lab, vm)[:3] == ("stopped", None, None)


def test_restart_vm_stops_waits_and_starts(lab: Lab) -> None:
    flow, principal, vm = flow_of(lab), alice(lab), lab.seed.vm_id
    lab.run_vm(vm)
    seen: list[str] = []
    hkd = play_hkd_stop(lab, vm, seen)
    texts: list[str] = []
    assert flow.restart_vm(principal, vm, texts.append) == "Starting virtual machine"
    hkd.join(10)
    assert seen == ["stop"]
    assert texts == ["Stopping virtual machine"]
    assert runtime_row(lab, vm)[:3] == ("stopped", "start", lab.seed.host_id)
    # a stopped VM is only started
    sql(lab, "UPDATE vm_runtimes SET vm_cmd = NULL, host_id = NULL WHERE vm_id = :v", v=vm)
    texts.clear()
    assert flow.restart_vm(principal, vm, texts.append) == "Starting virtual machine"
    assert texts == []


def test_spy_endpoint_of_a_running_vm_only(lab: Lab) -> None:
    flow, vm = flow_of(lab), lab.seed.vm_id
    with pytest.raises(Unavailable, match=rf"^VM {vm} is stopped, not running$"):
        flow.spy_endpoint(vm)
    lab.run_vm(vm)
    endpoint = flow.spy_endpoint(vm)
    assert (endpoint.address, endpoint.port) == ("127.0.0.1", lab.vma_port)
    VmaClient(endpoint.address, secret=endpoint.secret, port=endpoint.port).ping()
