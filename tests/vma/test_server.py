"""The VMA HTTP server and the stdlib client, over loopback."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.vma.auth import SecretStore, authorized
from qvd.vma.client import VmaAuthError, VmaClient, VmaHttpError, VmaRpcError
from qvd.vma.server import VmaHTTPServer, make_server
from tests.vma.test_simplerpc import RecordingAgent

SECRET = "s3cr3t-token-for-tests"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[VmaHTTPServer, RecordingAgent]]:
    secret_file = tmp_path / "vma.secret"
    secret_file.write_text(SECRET + "\n")
    agent = RecordingAgent()
    server = make_server("127.0.0.1", 0, agent, SecretStore(secret_file, environ={}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server, agent
    server.shutdown()
    server.server_close()
    thread.join()


def client_for(server: VmaHTTPServer, secret: str = SECRET) -> VmaClient:
    return VmaClient("127.0.0.1", port=server.server_address[1], secret=secret, timeout=5)


def test_authenticated_calls_reach_the_agent(
    served: tuple[VmaHTTPServer, RecordingAgent],
) -> None:
    server, agent = served
    client = client_for(server)
    client.ping()
    assert client.x_state() == "stopped"
    assert client.x_start({"qvd.vm.user.name": "bob", "multi": ["1", "2"]}) == {
        "x_state": "provisioning"
    }
    assert agent.calls == [("x_start", ({"qvd.vm.user.name": "bob", "multi": "2"}, "127.0.0.1"))]
    client.expire(soft="2030-01-01")
    assert agent.calls[-1] == (
        "expire",
        {"vm.expiration.soft": "2030-01-01", "vm.expiration.hard": ""},
    )


def test_unauthenticated_calls_get_401_and_do_nothing(
    served: tuple[VmaHTTPServer, RecordingAgent], caplog: pytest.LogCaptureFixture
) -> None:
    server, agent = served
    with caplog.at_level(logging.INFO, logger="qvd.vma.server"):
        for secret in ("", "wrong", SECRET[:-1]):
            with pytest.raises(VmaAuthError):
                client_for(server, secret).x_start({"qvd.vm.user.name": "mallory"})
        client_for(server).x_state()
    assert agent.calls == []
    assert "x_start -> 401" in caplog.text
    assert SECRET not in caplog.text
    assert "mallory" not in caplog.text


def test_qvd_style_get_with_query_string(served: tuple[VmaHTTPServer, RecordingAgent]) -> None:
    server, agent = served
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request(
        "GET", "/vma/x_start?qvd.vm.user.name=carol", headers={"Authorization": f"Bearer {SECRET}"}
    )
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json-simplerpc"
    assert response.read() == b'{"x_state": "provisioning"}'
    conn.request("GET", "/vma/x_state")  # same keep-alive connection, no secret
    refused = conn.getresponse()
    assert refused.status == 401
    assert refused.getheader("WWW-Authenticate") == 'Bearer realm="qvd-vma"'
    refused.read()
    conn.close()
    assert agent.calls == [("x_start", ({"qvd.vm.user.name": "carol"}, "127.0.0.1"))]


def test_errors_and_unknown_methods(served: tuple[VmaHTTPServer, RecordingAgent]) -> None:
    server, agent = served
    agent.refuse = True
    with pytest.raises(VmaRpcError, match="session is starting"):
        client_for(server).x_start()
    with pytest.raises(VmaHttpError) as unknown:
        client_for(server).call("vnc_connect")
    assert unknown.value.status == 404


def test_secret_store_reads_the_file_then_the_environment(tmp_path: Path) -> None:
    env = {"QVD_VMA_SECRET": "from-env"}
    store = SecretStore(tmp_path / "absent", environ=env)
    assert store.current() == b"from-env"
    assert "QVD_VMA_SECRET" not in env  # children never inherit it
    (tmp_path / "absent").write_text("from-file\n")
    assert store.current() == b"from-file"
    assert SecretStore(tmp_path / "none", environ={}).current() is None


def test_authorization_header_check() -> None:
    assert authorized("Bearer abc", b"abc")
    assert authorized("bearer  abc ", b"abc")
    assert not authorized("Basic abc", b"abc")
    assert not authorized("Bearer abc", None)
    assert not authorized(None, b"abc")
    assert not authorized("Bearer ", b"")
