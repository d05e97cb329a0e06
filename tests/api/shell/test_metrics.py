"""``MetricsGate``: who may scrape ``/metrics`` (the rule alone; the real server is
exercised in tests/security/test_metrics_auth.py)."""

from __future__ import annotations

import pytest

from qvd.api.shell.metrics import MetricsGate, is_loopback


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_addresses(host: str | None, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_without_a_token_only_loopback_clients_may_scrape() -> None:
    gate = MetricsGate("")
    assert gate.refusal("127.0.0.1", None) is None
    refused = gate.refusal("10.1.2.3", "Bearer anything")
    assert refused is not None
    assert refused.status == 403


def test_with_a_token_every_client_needs_it() -> None:
    gate = MetricsGate("s3cr3t-scrape")
    assert gate.refusal("10.1.2.3", "Bearer s3cr3t-scrape") is None
    assert gate.refusal("10.1.2.3", "bearer s3cr3t-scrape") is None
    for header in (None, "", "Bearer", "Bearer wrong", "Basic s3cr3t-scrape", "s3cr3t-scrape"):
        refused = gate.refusal("127.0.0.1", header)
        assert refused is not None, header
        assert refused.status == 401
        assert "s3cr3t" not in refused.reason
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
