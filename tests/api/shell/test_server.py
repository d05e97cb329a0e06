"""``serve``: the API over TLS on loopback, with a self-signed certificate made when
none is configured, started and stopped by events (as ``qvd up`` does)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from sqlalchemy import Engine

from qvd.api import api_endpoint, serve
from tests.api.conftest import World, api_config, running_api


def test_serve_over_tls_until_stopped(tmp_path: Path, api_engine: Engine, world: World) -> None:
    with running_api(tmp_path, api_engine, tmp_path / "c") as server:
        endpoint = api_endpoint(server.config)
        assert endpoint.url == f"https://127.0.0.1:{server.port}/"
        assert not endpoint.certificate_created  # made by serve, reused now
        assert oct((tmp_path / "c" / "key.pem").stat().st_mode & 0o777) == "0o600"
        cert = x509.load_pem_x509_certificate((tmp_path / "c" / "cert.pem").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        context = ssl.create_default_context(cafile=str(endpoint.cert))
        with httpx.Client(verify=context, base_url=endpoint.url) as client:
            info = client.post("/api/info", json={}).json()
            assert info["status"] == 0
            r = client.post("/api", json={"action": "vm_get_list"})
            assert r.json()["status"] == 3100


def test_a_taken_port_is_a_clear_error(tmp_path: Path, api_engine: Engine) -> None:
    import socket

    from qvd.api import ServeError, login_instructions

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = api_config(tmp_path, **{
            "api.port": str(port), "path.api.ssl.cert": str(tmp_path / "cert.pem"),
            "path.api.ssl.key": str(tmp_path / "key.pem")})  # fmt: skip
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}"):
            serve(config, engine=api_engine)
    lines = login_instructions(api_endpoint(config))
    assert any(f"qa -u https://127.0.0.1:{port}/" in line for line in lines)
    assert lines[0].split()[:2] == ["WAT:", f"https://127.0.0.1:{port}/"]
