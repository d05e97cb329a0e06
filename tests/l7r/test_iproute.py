"""The route check of a VM address."""

from __future__ import annotations

import pytest

from qvd.l7r.iproute import route_problem


@pytest.mark.parametrize(
    ("address", "output", "ok"),
    [
        ("127.0.0.1", "", True),
        ("10.214.3.101", "10.214.3.101 dev qvdhab12 src 10.214.3.2 uid 0 \\    cache", True),
        ("8.8.8.8", "8.8.8.8 via 192.168.1.1 dev eth0 src 192.168.1.5", False),
        ("10.9.9.9", "unreachable 10.9.9.9 uid 0", False),
        ("nonsense", "", False),
    ],
)
def test_route_check(address: str, output: str, ok: bool) -> None:
    assert (route_problem(address, output) is None) is ok
