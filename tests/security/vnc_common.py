"""Shared by the vnc_connect attack tests: a container whose session an NX client holds."""

from __future__ import annotations

from collections.abc import Callable

from qvd.di.testbed import NxProxy, Xvfb
from qvd.hkd.backends.lxc.testbed import Container
from qvd.vma.client import VmaClient
from tests.vma.helpers import wait_state

USER = {"qvd.vm.user.name": "alice", "qvd.vm.user.uid": "23456", "qvd.client.link": "lan"}


def connect_nx(
    container: Container, client: VmaClient, xvfb: Xvfb, proxies: Callable[..., NxProxy]
) -> NxProxy:
    cookie = str(client.x_start(USER)["cookie"])
    assert client.x_wait(timeout=20) == "listening"
    proxy = proxies(
        display=xvfb.display, host=container.address, port=4100, cookie=cookie, nx_display=100
    )
    assert wait_state(client, "connected") == "connected", proxy.log()
    return proxy


def processes(container: Container, command: str) -> list[str]:
    """The argument lists of the container's processes named ``command``."""
    out = container.attach("ps", "-C", command, "-o", "args=").stdout
    return [line for line in out.splitlines() if line.strip()]


def listening_ports(container: Container) -> set[int]:
    out = container.attach("ss", "-Hltn").stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}
