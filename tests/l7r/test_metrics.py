"""The L7R's metrics (``qvd.l7r.metrics``) after real requests: a real L7R over TLS, a
real PostgreSQL, the real VMA RPC server (tests/l7r/conftest.py's lab). The registry is
read as Prometheus reads it: its text exposition, parsed by prometheus_client."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from qvd.l7r.connect import Aborted
from qvd.l7r.errors import (
    BadRequest,
    Busy,
    DatabaseUnavailable,
    Forbidden,
    Internal,
    NotFound,
    TooManyAttempts,
    Unauthorized,
    Unavailable,
)
from qvd.l7r.metrics import connect_result
from tests.l7r.conftest import Lab
from tests.l7r.test_server import final_response, read_response, swap_ids
from tests.l7r.test_wire import A1, A2, GREETING


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The value of one sample of the registry's exposition (0 when absent)."""
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wrong_password(data: bytes) -> bytes:
    wrong = base64.b64encode(b"alice:wrong").decode().encode()
    return data.replace(b"YWxpY2U6c2VjcmV0", wrong)


def test_a_relayed_session_counts_its_connect_bytes_and_session(lab: Lab) -> None:
    registry = lab.server.metrics.registry
    vm = lab.seed.vm_id
    lab.run_vm(vm)
    assert sample(registry, "qvd_l7r_connects_total", result="ok") == 0
    assert sample(registry, "qvd_l7r_sessions") == 0
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, vm))
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert sample(registry, "qvd_l7r_sessions") == 1
        s.sendall(GREETING)
        banner = s.recv(100)
        assert banner.startswith(b"NXPROXY-")
        s.sendall(b"ECHO-payload")
        assert s.recv(100) == b"ECHO-payload"
        assert sample(registry, "qvd_l7r_connects_total", result="ok") == 1
        sent = len(GREETING) + len(b"ECHO-payload")
        eventually(
            lambda: sample(registry, "qvd_l7r_relay_bytes_total", direction="in") >= sent,
            "the client's bytes counted",
        )
        assert sample(registry, "qvd_l7r_relay_bytes_total", direction="out") >= len(banner) + 12
    eventually(lambda: sample(registry, "qvd_l7r_sessions") == 0, "the session gone")
    assert sample(registry, "qvd_l7r_connects_total", result="ok") == 1


def test_a_wrong_password_counts_an_auth_failure_of_the_plugin(lab: Lab) -> None:
    registry = lab.server.metrics.registry
    vm = lab.seed.vm_id
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(wrong_password(swap_ids(A1, vm)))
        head, _ = read_response(s, buf)
        assert head.startswith(b"HTTP/1.1 401"), head
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(wrong_password(swap_ids(A2, vm)))
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 401"), head
    assert sample(registry, "qvd_l7r_auth_failures_total", plugin="default") == 2
    assert sample(registry, "qvd_l7r_connects_total", result="auth_failed") == 1
    assert sample(registry, "qvd_l7r_connects_total", result="ok") == 0


def test_refused_connects_count_by_their_reason(lab: Lab) -> None:
    registry = lab.server.metrics.registry
    lab.run_vm(lab.seed.vm_id)
    with lab.connect() as s:  # bob's VM: not alice's
        buf = bytearray()
        s.sendall(swap_ids(A2, lab.seed.vm_id).replace(
            f"id={lab.seed.vm_id}".encode(), f"id={lab.seed.other_vm}".encode()
        ))  # fmt: skip
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 404"), head
    lab.agent.fail = True
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(swap_ids(A2, lab.seed.vm_id))
        head, _, _ = final_response(s, buf)
        assert head.startswith(b"HTTP/1.1 503"), head
    assert sample(registry, "qvd_l7r_connects_total", result="no_vm") == 1
    assert sample(registry, "qvd_l7r_connects_total", result="unavailable") == 1
    assert sample(registry, "qvd_l7r_sessions") == 0


def test_labels_are_bounded_no_login_vm_or_address() -> None:
    """Every label value of the L7R's families comes from a fixed set or a plugin name."""
    results = {
        connect_result(e)
        for e in (
            None, Unauthorized("x"), TooManyAttempts("x"), NotFound("x"), Forbidden("x"),
            Busy("x"), DatabaseUnavailable("x"), Aborted("x"), Unavailable("x"),
            BadRequest("x"), Internal("x"), RuntimeError("x"),
        )
    }  # fmt: skip
    assert results == {
        "ok", "auth_failed", "rate_limited", "no_vm", "forbidden", "busy", "db_unavailable",
        "aborted", "unavailable", "bad_request", "error",
    }  # fmt: skip


def test_figures_go_to_the_l7rs_own_registry_not_the_default_one(lab: Lab) -> None:
    """Several L7Rs run in one process (tests, one node's doors): each counts in the
    registry it was given, never in prometheus_client's process-wide default one."""
    with lab.connect() as s:
        buf = bytearray()
        s.sendall(wrong_password(swap_ids(A1, lab.seed.vm_id)))
        head, _ = read_response(s, buf)
    assert head.startswith(b"HTTP/1.1 401")
    assert sample(lab.server.metrics.registry, "qvd_l7r_auth_failures_total") == 1
    assert sample(REGISTRY, "qvd_l7r_auth_failures_total") == 0
