"""``call_vma`` tells a dead agent (refused) from a silent one (timeout): the HKD gives
the first up soon and the second a longer patience."""

from __future__ import annotations

import socket

import pytest

from qvd.vma.client import VmaUnavailable, call_vma


def test_nobody_listening_is_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(VmaUnavailable) as caught:
            call_vma("127.0.0.1", "ping", secret="s" * 64, port=port, timeout=2)
    assert caught.value.refused


def test_a_listener_that_never_answers_is_silent() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # the kernel accepts; nobody ever reads or answers
        port = server.getsockname()[1]
        with pytest.raises(VmaUnavailable) as caught:
            call_vma("127.0.0.1", "ping", secret="s" * 64, port=port, timeout=0.3)
    assert not caught.value.refused
