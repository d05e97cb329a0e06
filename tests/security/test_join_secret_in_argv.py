"""A join token or a database password on the command line is readable by every user
of the machine (/proc/PID/cmdline): ``qvd node join`` refuses it before it does
anything, and reads the secret from stdin, a private file or the environment."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from qvd.node.jointoken import JoinToken, encode_token, new_secret


def _join(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QVD_CONFIG", "QVD_JOIN_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "qvd", "node", "join", "--no-start", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def _token() -> str:
    # points at a port nothing listens on: a refusal must come before any connection
    return encode_token(
        JoinToken(
            secret=new_secret(),
            db_host="127.0.0.1",
            db_port="1",
            db_name="qvd",
            expiration=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
    )


def test_a_token_on_argv_is_refused(tmp_path: Path) -> None:
    token = _token()
    done = _join("--token", token, "--config", str(tmp_path / "node.conf"))
    assert done.returncode == 1
    assert "process list" in done.stderr
    assert token not in done.stderr + done.stdout
    assert not (tmp_path / "node.conf").exists()


def test_a_password_in_a_database_url_on_argv_is_refused(tmp_path: Path) -> None:
    done = _join("--database", "postgresql://qvd:s3cret@127.0.0.1:1/qvd",
                 "--config", str(tmp_path / "node.conf"))  # fmt: skip
    assert done.returncode == 1
    assert "process list" in done.stderr
    assert "s3cret" not in done.stderr


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(_token())
    path.chmod(0o644)
    done = _join("--token", f"@{path}", "--config", str(tmp_path / "node.conf"))
    assert done.returncode == 1
    assert "readable by others" in done.stderr


def test_a_token_on_stdin_is_read(tmp_path: Path) -> None:
    """The accepted way goes on to the database (here: nothing listens, a clear error)."""
    done = _join("--token", "-", "--name", "node-a", "--address", "10.0.0.2", "--config",
                 str(tmp_path / "node.conf"), stdin=_token() + "\n")  # fmt: skip
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr, done.stderr
    assert "process list" not in done.stderr
