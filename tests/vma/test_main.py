"""End to end: the ``test`` image in a real LXC container, its VMA over HTTP, a real
nxproxy under Xvfb, pixels checked on the client display."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qvd.di.testbed import NetnsPeer, NxProxy, Xvfb, check_route
from qvd.hkd.backends.lxc.testbed import Container
from qvd.vma.client import VmaAuthError, VmaClient, VmaRpcError, call_vma
from tests.vma.helpers import StartContainer, wait_for_xterm, wait_state, xterm_visible

pytestmark = pytest.mark.timeout(900)

USER = {"qvd.vm.user.name": "alice", "qvd.vm.user.uid": "23456", "qvd.client.link": "lan"}


def xterm_pids(container: Container) -> list[int]:
    out = container.attach("ps", "-C", "xterm", "-o", "pid=").stdout
    return sorted(int(word) for word in out.split())


def test_route_to_container_goes_through_our_bridge(start_container: StartContainer) -> None:
    container, _client = start_container()
    check_route(container.address, container.bridge.name)
    default = container.attach("ip", "-4", "route", "show", "default").stdout
    assert default.strip() == ""


def test_ping_and_unauthenticated_calls_are_refused(start_container: StartContainer) -> None:
    container, client = start_container()
    assert client.call("ping") is None
    for secret in ("", "wrong", container.secret + "x"):
        with pytest.raises(VmaAuthError) as refused:
            call_vma(container.address, "x_start", USER, secret=secret)
        assert refused.value.status == 401
    assert client.x_state() == "stopped"  # nothing was started by the refused calls
    log = container.log_text("/var/log/qvd/vma.log")
    assert "x_start -> 401" in log
    assert container.secret not in log


def test_session_lifecycle(
    start_container: StartContainer,
    xvfb: Xvfb,
    proxies: Callable[..., NxProxy],
    evidence_dir: Path,
) -> None:
    container, client = start_container()
    started = client.x_start(USER)
    assert started["x_state"] in ("provisioning", "starting", "listening")
    cookie = str(started["cookie"])
    assert len(cookie) == 32
    assert started["port"] == 4100
    assert client.x_wait(timeout=15) == "listening"  # one call that blocks until it listens
    assert "alice:x:23456:" in container.log_text("/etc/passwd")
    # a second x_start while listening is harmless and returns the same cookie
    assert client.x_start(USER)["cookie"] == cookie

    first = proxies(
        display=xvfb.display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert first.wait_log("Session started", timeout=15), first.log()
    assert wait_state(client, "connected") == "connected"
    shot = wait_for_xterm(xvfb.display)
    shot.save_png(evidence_dir / "vma-xterm.png")
    assert xterm_visible(shot), "no xterm on the client display"
    session_pids = xterm_pids(container)
    assert len(session_pids) == 1

    # suspend: the client goes away
    first.close()
    assert wait_state(client, "suspended") == "suspended"
    assert xterm_pids(container) == session_pids

    # resume: same X client
    resumed = client.x_start(USER)
    assert resumed["cookie"] == cookie
    assert wait_state(client, "listening") == "listening"
    second = proxies(
        display=xvfb.display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert second.wait_log("Session resumed", "Session started", timeout=15), second.log()
    assert wait_state(client, "connected") == "connected"
    assert xterm_pids(container) == session_pids
    assert xterm_visible(wait_for_xterm(xvfb.display))

    # x_suspend over RPC, then x_start while suspended is refused only while busy
    assert client.x_suspend() in ("connected", "suspending", "suspended")
    assert wait_state(client, "suspended") == "suspended"

    # stop
    client.x_stop()
    assert wait_state(client, "stopped") == "stopped"
    assert xterm_pids(container) == []
    state_file = container.log_text("/var/run/qvd/nxagent.state")
    assert state_file.startswith("stopped:")


def test_x_start_while_connected_suspends_and_asks_to_retry(
    start_container: StartContainer, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> None:
    container, client = start_container()
    cookie = str(client.x_start(USER)["cookie"])
    assert wait_state(client, "listening") == "listening"
    proxy = proxies(
        display=xvfb.display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert wait_state(client, "connected") == "connected", proxy.log()
    with pytest.raises(VmaRpcError, match="retry"):
        client.x_start(USER)
    assert wait_state(client, "suspended") == "suspended"


def test_wrong_cookie_from_another_vm_cannot_kill_the_session(
    start_container: StartContainer,
    bridge_peer: NetnsPeer,
    xvfb: Xvfb,
    proxies: Callable[..., NxProxy],
) -> None:
    container, client = start_container()
    cookie = str(client.x_start(USER)["cookie"])
    assert wait_state(client, "listening") == "listening"
    attacker = proxies(
        display=xvfb.display,
        host=container.address,
        port=4100,
        cookie="0" * 32,
        nx_display=100,
        netns=bridge_peer.name,
    )
    assert attacker.wait_log("Connected to remote proxy", timeout=10), attacker.log()
    end = time.monotonic() + 10
    agent_log = ""
    while "Refusing connection" not in agent_log and time.monotonic() < end:
        time.sleep(0.1)
        agent_log = container.log_text("/var/log/qvd/nxagent.log")
    assert f"Refusing connection from '{bridge_peer.address}'" in agent_log
    assert client.x_state() == "listening"
    # the tunnel's address still gets the session
    good = proxies(
        display=xvfb.display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert good.wait_log("Session started", timeout=15), good.log()
    assert wait_state(client, "connected") == "connected"


def test_listening_times_out_when_no_client_comes(start_container: StartContainer) -> None:
    container, client = start_container()
    client.x_start(USER)
    assert wait_state(client, "listening") == "listening"
    # internal.nxagent.timeout.listening = 10 s, then TERM → stopping → stopped
    assert wait_state(client, "stopped", timeout=25) == "stopped"
    assert "x_start" in container.log_text("/var/log/qvd/vma.log")


def test_invalid_user_properties_are_refused_at_provisioning(
    start_container: StartContainer,
) -> None:
    container, client = start_container()
    client.x_start({"qvd.vm.user.name": "-rf"})
    assert wait_state(client, "stopped") == "stopped"
    assert "invalid user name" in container.log_text("/var/log/qvd/vma.log")


def test_poweroff_stops_the_container(start_container: StartContainer) -> None:
    container, client = start_container()
    client.x_start(USER)
    assert wait_state(client, "listening") == "listening"
    client.poweroff()
    assert container.wait_stopped(15), container.state()


def test_client_reports_an_unreachable_vma() -> None:
    client = VmaClient("127.0.0.1", port=1, secret="x", timeout=1)
    with pytest.raises(Exception, match=r"127\.0\.0\.1:1"):
        client.ping()
