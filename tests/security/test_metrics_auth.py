"""Attack: anybody who reaches the API's port reads ``/metrics`` (every VM, user and
host state count of every tenant, and the request mix).

Before the fix ``/metrics`` answered every client. Now, with no ``metrics.token`` it
answers only loopback clients, and with one it answers only requests carrying it.
The real API server (uvicorn over TLS) listens on the address of a bridge this test
makes; the scraper is a process in a network namespace on that bridge (a machine on
the network), or a client on loopback.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from qvd.api import api_endpoint, serve
from qvd.db import make_engine
from qvd.di.testbed import Bridge, NetnsPeer
from tests.api.conftest import api_config
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(180)

TOKEN = "scrape-Tok3n-under-test-7f2c"
# a scraper on another machine: one GET, prints the status and the body as JSON
SCRAPER = """
import json, ssl, sys, urllib.error, urllib.request
url, cafile, auth = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
context = ssl.create_default_context(cafile=cafile)
context.check_hostname = False
try:
    with urllib.request.urlopen(request, context=context, timeout=20) as reply:
        print(json.dumps([reply.status, reply.read().decode()]))
except urllib.error.HTTPError as refused:
    print(json.dumps([refused.code, refused.read().decode()]))
"""


@pytest.fixture
def engine(db: Any) -> Iterator[Engine]:
    made = make_engine(db)
    yield made
    made.dispose()


@contextmanager
def api_on(tmp: Path, engine: Engine, address: str, token: str = "") -> Iterator[str]:
    """The real API on ``address``; yields the URL of its ``/metrics``."""
    certs = tmp / f"certs-{address}-{bool(token)}"
    certs.mkdir()
    config = api_config(tmp, **{
        "api.address": address, "api.port": str(free_port()), "metrics.token": token,
        "path.api.ssl.cert": str(certs / "cert.pem"), "path.api.ssl.key": str(certs / "key.pem"),
    })  # fmt: skip
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=serve, args=(config,), kwargs={"engine": engine, "ready": ready, "stop": stop}
    )
    thread.start()
    try:
        assert ready.wait(20)
        yield api_endpoint(config).url + "metrics"
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


def scrape_from(peer: NetnsPeer, url: str, cafile: Path, auth: str = "") -> tuple[int, str]:
    done = subprocess.run(
        ["ip", "netns", "exec", peer.name, sys.executable, "-c", SCRAPER, url, str(cafile), auth],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, body = json.loads(done.stdout)
    return int(status), str(body)


def scrape_here(url: str, cafile: Path, auth: str = "") -> tuple[int, str]:
    headers = {"Authorization": auth} if auth else {}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cafile)), timeout=20) as client:
        reply = client.get(url, headers=headers)
    return reply.status_code, reply.text


def test_metrics_need_loopback_or_the_token(
    network: tuple[Bridge, NetnsPeer], engine: Engine, tmp_path: Path
) -> None:
    bridge, peer = network

    # no token: loopback scrapes, a machine on the network is refused
    with api_on(tmp_path, engine, "127.0.0.1") as url:
        status, body = scrape_here(url, tmp_path / "certs-127.0.0.1-False" / "cert.pem")
        assert status == 200
        assert "qvd_api_requests_total" in body
    with api_on(tmp_path, engine, bridge.host_address) as url:
        cafile = tmp_path / f"certs-{bridge.host_address}-False" / "cert.pem"
        status, body = scrape_from(peer, url, cafile)
        assert status == 403, body
        assert "qvd_" not in body

    # a token: only requests carrying it, from anywhere; the token never echoes back
    with api_on(tmp_path, engine, bridge.host_address, TOKEN) as url:
        cafile = tmp_path / f"certs-{bridge.host_address}-True" / "cert.pem"
        for auth in ("", "Bearer wrong-token", f"Basic {TOKEN}"):
            status, body = scrape_from(peer, url, cafile, auth)
            assert status == 401, (auth, body)
            assert "qvd_" not in body
            assert TOKEN not in body
        status, body = scrape_from(peer, url, cafile, f"Bearer {TOKEN}")
        assert status == 200, body
        assert "qvd_api_requests_total" in body
        assert TOKEN not in body
