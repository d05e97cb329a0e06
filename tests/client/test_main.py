"""``qvd-client``'s command line against a real L7R (loopback TLS, real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qvd.client import settings
from qvd.client.main import main
from tests.l7r.conftest import PASSWORD, Lab


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    return secret


def test_list_prints_a_table_and_remembers(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--host", "127.0.0.1", "--port", str(lab.server.port), "--user", "alice",
            "--password-file", str(home), "--insecure", "--list"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "NAME", "STATE", "BLOCKED"]
    assert out[1].split() == [str(lab.seed.vm_id), "alice-desk", "stopped", "0"]
    assert settings.load().values == {
        "client.host.name": "127.0.0.1",
        "client.host.port": str(lab.server.port),
        "client.user.name": "alice",
    }
    # remembered: host and user may be left out
    assert main(["--password-file", str(home), "--insecure", "--list"]) == 0


def test_errors_exit_with_a_message(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--host", "127.0.0.1", "--port", str(lab.server.port), "--insecure",
            "--password-file", str(home)]  # fmt: skip
    assert main([*base, "--user", "alice", "--vm", "999999"]) == 2
    assert "does not exist any more (404): VM 999999 does not exist" in capsys.readouterr().err
    assert main([*base, "--user", "mallory", "--list"]) == 2
    assert "Login error" in capsys.readouterr().err
