"""Attack: open a VNC stream on a desktop with a wrong (or no) VMA secret: another VM
on the bridge, or a forged L7R, offering its own one-time password.

The guard: ``vnc_connect`` is authenticated like every VMA method before anything
else runs. Reproduced against a real container whose session an NX client holds:
every attempt gets 401 and no x11vnc process ever starts (none runs, no x11vnc log).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable

import pytest

from qvd.di.testbed import NxProxy, Xvfb
from tests.security.vnc_common import connect_nx, processes
from tests.vma.conftest import (  # noqa: F401 (fixtures used by name)
    bridge,
    proxies,
    scratch,
    start_container,
    test_image,
    xvfb,
)
from tests.vma.helpers import StartContainer

pytestmark = pytest.mark.timeout(300)


def test_wrong_vma_secret_starts_no_vnc_server(
    start_container: StartContainer,  # noqa: F811
    xvfb: Xvfb,  # noqa: F811
    proxies: Callable[..., NxProxy],  # noqa: F811
) -> None:
    container, client = start_container()
    connect_nx(container, client, xvfb, proxies)
    for authorization in (None, "Bearer wrong", f"Bearer {container.secret}x", "Basic eDp5"):
        headers = {
            "Connection": "Upgrade",
            "Upgrade": "VNC",
            "X-QVD-VNC-Password": "Ab3$Ab3$",
        }
        if authorization is not None:
            headers["Authorization"] = authorization
        conn = http.client.HTTPConnection(container.address, 3030, timeout=10)
        try:
            conn.request("GET", "/vma/vnc_connect?view_only=0&attach=0", headers=headers)
            response = conn.getresponse()
            assert response.status == 401, authorization
            assert response.getheader("Upgrade") is None
        finally:
            conn.close()
    assert processes(container, "x11vnc") == []
    assert container.log_text("/var/log/qvd/x11vnc.log") == ""
    assert "vnc_connect -> 401" in container.log_text("/var/log/qvd/vma.log")
