"""``PortalServer`` attached to the L7R: a port it cannot take is a clear error at
start (the L7R does not run half-configured), and it serves HTTPS only, with the
L7R's certificate."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.db import DatabaseTarget
from qvd.l7r import L7rServer
from qvd.portal import PortalServer
from tests.l7r.conftest import l7r_config, seed
from tests.portal.conftest import PortalLab


def test_a_taken_port_is_a_clear_error(db: DatabaseTarget, engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    config = l7r_config(
        tmp_path / "run", **{"l7r.portal.address": "127.0.0.1", "l7r.portal.port": str(port)}
    )
    server = L7rServer(config, db, seeded.host_id, "127.0.0.1", attach=[PortalServer])
    try:
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.start()
    finally:
        server.stop()
        taken.close()


def test_plain_http_gets_no_page(portal_lab: PortalLab) -> None:
    with socket.create_connection(("127.0.0.1", portal_lab.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(10)
        try:
            answer = raw.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert b"<form" not in answer
    assert not answer.startswith(b"HTTP/1.1 200")
    # and the same port speaks TLS with the L7R's certificate
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", portal_lab.port))) as tls:
        portal_cert = tls.getpeercert(binary_form=True)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", portal_lab.server.port))) as tls:
        assert tls.getpeercert(binary_form=True) == portal_cert
