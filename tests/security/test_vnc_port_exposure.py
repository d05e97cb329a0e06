"""Attack: reach a desktop's VNC server directly, without the L7R (another VM on the
bridge, or anyone who can route to the VM), skipping the portal's login.

The guard: x11vnc runs only as ``-inetd`` on the VMA's authenticated upgrade, so no
VNC port is ever opened in the VM. Reproduced in a real container with its real VMA:
while a browser-style VNC stream is open, the VM listens on exactly the ports it had
before (the VMA's and nxagent's), nothing on 5900+ or anywhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from qvd.di.testbed import NxProxy, Xvfb
from qvd.l7r.vnc import open_vnc
from tests.security.vnc_common import connect_nx, listening_ports, processes
from tests.vma.conftest import (  # noqa: F401 (fixtures used by name)
    bridge,
    proxies,
    scratch,
    start_container,
    test_image,
    xvfb,
)
from tests.vma.helpers import StartContainer
from tests.vma.vncview import TIMEOUT, VmaAt, read_frame

pytestmark = pytest.mark.timeout(300)


def test_no_vnc_port_opens_while_a_vnc_stream_runs(
    start_container: StartContainer,  # noqa: F811
    xvfb: Xvfb,  # noqa: F811
    proxies: Callable[..., NxProxy],  # noqa: F811
) -> None:
    container, client = start_container()
    connect_nx(container, client, xvfb, proxies)
    before = listening_ports(container)
    assert 3030 in before

    async def during() -> tuple[set[int], int, list[str]]:
        endpoint = VmaAt(container.address, 3030, container.secret.encode())
        stream = await open_vnc(endpoint, view_only=True, attach=False, timeout=TIMEOUT)
        try:
            frame = await asyncio.wait_for(read_frame(stream), TIMEOUT)
            ports = await asyncio.to_thread(listening_ports, container)
            servers = await asyncio.to_thread(processes, container, "x11vnc")
            return ports, frame.width, servers
        finally:
            await stream.close()

    ports, width, servers = asyncio.run(during())
    assert width > 0  # the stream was live when the ports were listed
    assert len(servers) == 1
    assert "-inetd" in servers[0].split()
    assert ports == before, f"new listening ports during a VNC stream: {ports - before}"
    assert not any(5800 <= port < 6000 for port in ports)
