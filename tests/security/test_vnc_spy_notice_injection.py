"""Attack: an administrator's spy notice (a tenant-visible text that ends up in the
VM) carrying shell syntax or X toolkit options, to run commands as the user or to
point the notice at another display.

The guard: the notice is validated (printable, at most 200 characters) and handed to
``xmessage`` on its stdin, never in a shell and never in argv. Reproduced in a real
container: the notice is shown (xmessage runs), its argv holds none of the text, no
command of it ran; control characters are refused with 400.
"""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Callable

import pytest

from qvd.di.testbed import NxProxy, Xvfb
from qvd.l7r.vnc import open_vnc
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
from tests.vma.vncview import TIMEOUT, VmaAt, read_frame

pytestmark = pytest.mark.timeout(300)

MARK = "/tmp/qvd-notice-pwned"  # a path inside the container
NOTICE = f"-display 10.0.0.1:0 -xrm '*font: x' $(touch {MARK}) `touch {MARK}`; touch {MARK}"


def test_notice_is_neither_shell_nor_arguments(
    start_container: StartContainer,  # noqa: F811
    xvfb: Xvfb,  # noqa: F811
    proxies: Callable[..., NxProxy],  # noqa: F811
) -> None:
    container, client = start_container()
    connect_nx(container, client, xvfb, proxies)

    async def spy() -> list[str]:
        endpoint = VmaAt(container.address, 3030, container.secret.encode())
        stream = await open_vnc(
            endpoint, view_only=True, attach=False, notice=NOTICE, timeout=TIMEOUT
        )
        try:
            await asyncio.wait_for(read_frame(stream), TIMEOUT)
            for _ in range(100):  # the notice comes up next to x11vnc
                shown = await asyncio.to_thread(processes, container, "xmessage")
                if shown:
                    return shown
                await asyncio.sleep(0.1)
            return []
        finally:
            await stream.close()

    shown = asyncio.run(spy())
    assert len(shown) == 1, "the notice was not shown"
    assert "touch" not in shown[0]
    assert "-display" not in shown[0]
    assert container.attach("test", "-e", MARK).returncode != 0, "a command of the notice ran"


def test_control_characters_in_the_notice_are_refused(
    start_container: StartContainer,  # noqa: F811
) -> None:
    container, _client = start_container()
    conn = http.client.HTTPConnection(container.address, 3030, timeout=10)
    try:
        conn.request(
            "GET",
            "/vma/vnc_connect?view_only=1&attach=0",
            headers={
                "Authorization": f"Bearer {container.secret}",
                "Connection": "Upgrade",
                "Upgrade": "VNC",
                "X-QVD-VNC-Password": "Ab3$Ab3$",
                "X-QVD-Spy-Notice": "hello\x1b]0;evil\x07",
            },
        )
        response = conn.getresponse()
        assert response.status == 400
        assert "printable" in response.read().decode()
    finally:
        conn.close()
    assert processes(container, "x11vnc") == []
