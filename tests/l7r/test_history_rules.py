"""The session history's pure rules: why a connection ended, a failure's code, what a
client says it is (no I/O)."""

from __future__ import annotations

import dataclasses

import pytest

from qvd.l7r.errors import TooManyAttempts, Unauthorized, Unavailable
from qvd.l7r.history import RelayEnd, claimed_login, client_info, end_reason, failure_code
from qvd.l7r.store import Runtime

HOST = 7
RUNNING = Runtime(
    vm_state="running", vm_cmd=None, host_id=3, vm_address="10.0.0.2", vma_port=3030,
    x_port=5000, user_state="connected", user_cmd=None, l7r_host_id=HOST, last_error=None,
    run_attempts=1,
)  # fmt: skip


@pytest.mark.parametrize(
    ("end", "changes", "reason"),
    [
        (RelayEnd(), {}, "disconnect"),
        (RelayEnd(failed=True), {}, "error"),
        (RelayEnd(aborted=True), {"user_cmd": "abort"}, "taken_over"),
        (RelayEnd(), {"l7r_host_id": HOST + 1}, "taken_over"),
        (RelayEnd(aborted=True), {}, "taken_over"),  # aborted, the row already released
        (RelayEnd(aborted=True, shutting_down=True), {}, "disconnect"),
        (RelayEnd(), {"vm_state": "stopping"}, "stopped"),
        (RelayEnd(), {"vm_cmd": "stop"}, "stopped"),
        # a VM lost with its node: stopped, even though the L7R was asked to abort
        (RelayEnd(aborted=True), {"vm_state": "stopped", "user_cmd": "abort"}, "stopped"),
    ],
)
def test_end_reason(end: RelayEnd, changes: dict[str, object], reason: str) -> None:
    assert end_reason(end, dataclasses.replace(RUNNING, **changes), HOST) == reason


def test_end_reason_without_the_row() -> None:
    assert end_reason(RelayEnd(), None, HOST) == "disconnect"
    assert end_reason(RelayEnd(failed=True), None, HOST) == "error"


def test_failure_codes() -> None:
    assert failure_code(Unauthorized("x")) == "unauthorized"
    assert failure_code(TooManyAttempts("x")) == "too_many_attempts"
    assert failure_code(Unavailable("x")) == "unavailable"
    assert failure_code(ConnectionResetError()) == "connection_reset_error"


def test_client_info() -> None:
    assert client_info("QVD/3.1 libcurl", {"qvd.client.os": "linux"}) == "QVD/3.1 libcurl"
    params = {"qvd.client.os": "linux", "qvd.client.version": "4.2",
              "qvd.client.geometry": "800x600", "custom.x": "1"}  # fmt: skip
    assert client_info(None, params) == "os=linux version=4.2"
    assert client_info("", {}) is None
    assert client_info("A\x1b[31mB\n" + "x" * 300, {}) == ("A?[31mB?" + "x" * 300)[:128]


def test_claimed_login_is_cleaned_and_cut() -> None:
    assert claimed_login("  bob\u202e  ") == "bob?"
    assert len(claimed_login("a" * 1000)) == 128
