"""``qvd-share-to-client`` for real, against the client's real slave server: a loopback
listener on 11000+display plays nxagent and nxproxy (each connection becomes the stdin
and stdout of ``python -m qvd.client.slaveserver``, as nxproxy runs its NX_SLAVE_CMD);
the command serves its folder with a real sftp-server, the client mounts it with sshfs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.client.slaveserver import ENV_BASE, ENV_ENABLED, ENV_KEY
from tests.slaveserver import KEY, fuse_works, mounted, wait_for

COMMAND = [sys.executable, "-m", "qvd.vma.sharetoclient"]


@contextlib.contextmanager
def fake_nx(base: Path, *, enabled: bool) -> Iterator[int]:
    """A listener on 127.0.0.1:11000+N; yields N (the desktop's display)."""
    listener = socket.socket()
    for display in range(900, 1000):
        try:
            listener.bind(("127.0.0.1", 11000 + display))
            break
        except OSError:
            continue
    else:
        pytest.skip("no free port in 11900-11999")
    listener.listen(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
    env.update({ENV_KEY: KEY, ENV_ENABLED: "1" if enabled else "0", ENV_BASE: str(base)})
    servers: list[subprocess.Popen[bytes]] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    servers.append(subprocess.Popen(
                        [sys.executable, "-m", "qvd.client.slaveserver"],
                        stdin=conn.fileno(), stdout=conn.fileno(), env=env,
                    ))  # fmt: skip

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield display
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)
        for server in servers:
            if server.poll() is None:
                server.terminate()
            server.wait(30)


def _env(tmp_path: Path, display: int, key: str = KEY) -> dict[str, str]:
    key_file = tmp_path / "slave-key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return {**os.environ, "QVD_SLAVE_KEY_FILE": str(key_file), "DISPLAY": f":{display}"}


def test_refusals_are_printed_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "Documents"
    folder.mkdir()
    with fake_nx(tmp_path / "QVD", enabled=False) as display:
        done = subprocess.run([*COMMAND, str(folder)], env=_env(tmp_path, display),
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 1
        assert "refused (403)" in done.stderr
        done = subprocess.run([*COMMAND, str(folder)], env=_env(tmp_path, display, "wrong"),
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 1
        assert "refused (401)" in done.stderr
    assert not (tmp_path / "QVD").exists()


def test_usage_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QVD_SLAVE_KEY_FILE"}
    for argv, message in (
        ([], "usage:"),
        ([str(tmp_path / "missing")], "not a directory"),
    ):
        done = subprocess.run([*COMMAND, *argv], env=env, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 2
        assert message in done.stderr
    done = subprocess.run([*COMMAND, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1
    assert "QVD_SLAVE_KEY_FILE is not set" in done.stderr


@pytest.mark.skipif(not fuse_works(), reason="no /dev/fuse, sshfs, fusermount3 or sftp-server")
def test_the_folder_is_open_while_the_command_runs(tmp_path: Path) -> None:
    folder = tmp_path / "desktop" / "My Docs"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("desktop file\n")
    base = tmp_path / "QVD"
    with fake_nx(base, enabled=True) as display:
        log = (tmp_path / "share.log").open("wb")
        share = subprocess.Popen([*COMMAND, str(folder)], env=_env(tmp_path, display),
                                 stderr=log)  # fmt: skip
        log.close()
        try:
            assert wait_for(lambda: mounted(base / "My Docs")), (tmp_path / "share.log").read_text()
            assert (base / "My Docs" / "a.txt").read_text() == "desktop file\n"
        finally:
            share.terminate()
            share.wait(30)
        assert wait_for(lambda: not mounted(base / "My Docs"))
        assert wait_for(lambda: list(base.iterdir()) == [])
