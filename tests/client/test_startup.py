"""What the client does before and around its sockets (the first-pixel path, issue #11).

- Nagle's algorithm is off on both sockets of the NX link (the TLS connection to the
  L7R and the local one from nxproxy): with it on, each of the ~ten round trips of an
  agent's resume waited for a delayed ACK (40 ms) before the first frame.
- ``--insecure`` builds its TLS context without the system's CA store (nothing is
  verified anyway); a ``--ca`` file is the only trust; by default the system's CAs and
  the host name are checked.
- Importing the client pulls neither ctypes (the display probe) nor the server's
  configuration package (only a settings file that exists needs its parser).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.main import Options, _tls, parse_args, resolve, tls_context
from qvd.client.nx import LocalProxy
from qvd.di.testbed import Xvfb
from qvd.selfsigned import self_signed
from tests.l7r.conftest import Lab


def _nagle_off(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def _options(*argv: str) -> Options:
    return resolve(parse_args(["--host", "127.0.0.1", "--user", "alice", *argv]), settings.load())


@pytest.fixture(autouse=True)
def _no_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))


def test_the_tls_connection_to_the_l7r_has_nagle_off(lab: Lab) -> None:
    opts = _options("--port", str(lab.server.port), "--insecure")
    with _tls(opts) as tls:
        assert tls.version() is not None  # the handshake is done: a real TLS socket
        assert _nagle_off(tls)


def test_the_socket_from_nxproxy_has_nagle_off(tmp_path: Path) -> None:
    screen = Xvfb("640x480x24")  # nxproxy -S needs the display it would draw into
    try:
        env = {**os.environ, "NX_ROOT": str(tmp_path / "nx"), "DISPLAY": screen.display}
        with LocalProxy(env) as proxy, proxy.accept() as local:  # a real nxproxy dials in
            assert proxy.proc is not None
            assert proxy.proc.poll() is None
            assert _nagle_off(local)
    finally:
        screen.close()


def test_insecure_loads_no_ca_store_and_checks_nothing() -> None:
    ctx = tls_context(_options("--insecure"))
    assert ctx.cert_store_stats()["x509_ca"] == 0
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname
    # the same protocol floor and options as the verifying default context
    assert ctx.minimum_version == ssl.create_default_context().minimum_version
    assert ctx.options == ssl.create_default_context().options


def test_a_ca_file_is_the_only_trust_and_the_default_verifies(tmp_path: Path) -> None:
    cert_pem, _key = self_signed(["qvd.example.test"], [])
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert_pem)
    pinned = tls_context(_options("--ca", str(ca)))
    assert pinned.cert_store_stats()["x509_ca"] == 1
    assert pinned.verify_mode == ssl.CERT_REQUIRED
    assert pinned.check_hostname
    default = tls_context(_options())
    assert default.verify_mode == ssl.CERT_REQUIRED
    assert default.check_hostname


def test_importing_the_client_pulls_no_ctypes_and_no_server_config() -> None:
    probe = (
        "import sys, qvd.client.main\n"
        "print(sorted(m for m in ('ctypes', 'qvd.config', 'h11', 'ssl') if m in sys.modules))"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "['h11', 'ssl']"
