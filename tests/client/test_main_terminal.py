"""``qvd-client`` as a user meets it, against the real L7R (loopback TLS, PostgreSQL):
the password asked on the terminal, a token, the settings file, the desktop menu and
stopping a desktop. Terminal sessions run the real program on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from qvd.client.main import main
from tests.l7r.auth.test_tokens import play_hkd_stop
from tests.l7r.conftest import PASSWORD, Lab
from tests.l7r.ldap_fixture import add_vm, basic, get

pytestmark = pytest.mark.slow


class Terminal:
    """``qvd-client`` on a pseudo-terminal (getpass reads the terminal, not stdin)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: nothing may return from here
            try:
                os.execve(sys.executable, [sys.executable, "-m", "qvd.client.main", *argv], env)  # noqa: S606
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.out = b""

    def expect(self, what: bytes, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while what not in self.out:
            left = end - time.monotonic()
            assert left > 0, f"no {what!r} in {self.out!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                assert chunk, f"the client ended without {what!r}: {self.out!r}"
                self.out += chunk

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def finish(self, timeout: float = 30.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                self.out += chunk
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"the client did not end: {self.out!r}")


def client_env(tmp_path: Path) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    return {**env, "PYTHONPATH": src, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def test_the_password_is_asked_on_the_terminal(lab: Lab, tmp_path: Path) -> None:
    term = Terminal(
        ["--host", "127.0.0.1", "--port", str(lab.server.port), "--user", "alice", "--insecure",
         "--list"],
        client_env(tmp_path),
    )  # fmt: skip
    term.expect(b"Password for alice@127.0.0.1: ")
    term.send(PASSWORD)
    assert term.finish() == 0, term.out
    assert b"alice-desk" in term.out
    assert PASSWORD.encode() + b"\r\n" not in term.out.split(b"Password for", 1)[1][:40]


def test_a_token_logs_in_without_user_or_password(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    made = get(lab, "/qvd/create_auth_token", basic("alice", PASSWORD))
    token = str(json.loads(made.body)["auth_token"])
    argv = ["--host", "127.0.0.1", "--port", str(lab.server.port), "--insecure", "--token"]
    assert main([*argv, token, "--list"]) == 0
    assert "alice-desk" in capsys.readouterr().out
    assert main([*argv, token + "x", "--list"]) == 2
    assert "Login error" in capsys.readouterr().err


def test_the_settings_file_is_enough(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "client.conf"
    conf.write_text(
        f"client.host.name = 127.0.0.1\nclient.host.port = {lab.server.port}\n"
        f"client.user.name = alice\nclient.user.password = {PASSWORD}\n"
        "client.ssl.allow_untrusted = 1\n"
    )
    assert main(["--config", str(conf), "--list"]) == 0
    assert "alice-desk" in capsys.readouterr().out
    conf.write_text(conf.read_text() + "client.geometry = huge\n")
    assert main(["--config", str(conf), "--list"]) == 2
    assert "line 6: client.geometry: 'huge' is not a valid value" in capsys.readouterr().err


def test_the_menu_then_stopping_the_chosen_desktop(lab: Lab, tmp_path: Path) -> None:
    with lab.engine.begin() as conn:
        osf = conn.execute(text("SELECT osf_id FROM vms WHERE id = :v"), {"v": lab.seed.vm_id})
        osf_id = int(osf.scalar_one())
    second = add_vm(lab.engine, lab.seed.user_id, osf_id, "alice-zeta")
    lab.run_vm(second)
    stopped: list[str] = []
    hkd = play_hkd_stop(lab, second, stopped)
    password = tmp_path / "pw"
    password.write_text(PASSWORD)
    term = Terminal(
        ["--host", "127.0.0.1", "--port", str(lab.server.port), "--user", "alice", "--insecure",
         "--password-file", str(password), "--stop"],
        client_env(tmp_path),
    )  # fmt: skip
    term.expect(b"Desktop to connect to")
    assert b"alice-desk" in term.out
    assert b"alice-zeta" in term.out
    term.send("2")
    assert term.finish() == 0, term.out
    hkd.join(10)
    assert stopped == ["stop"]
    assert f"Desktop {second}: Machine stopped".encode() in term.out
    with lab.engine.begin() as conn:
        state = conn.execute(
            text("SELECT vm_state FROM vm_runtimes WHERE vm_id = :v"), {"v": second}
        ).scalar_one()
    assert state == "stopped"
