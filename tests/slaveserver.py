"""The client's real slave server (``python -m qvd.client.slaveserver``) on one end of a
socketpair, as nxproxy runs it, and a desktop on the other end: a request, the answer,
and on 101 a real ``sftp-server -d <folder>`` serving the desktop's folder."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qvd.client.slaveserver import ENV_BASE, ENV_ENABLED, ENV_KEY, ENV_MAX_OPEN, ENV_SLOTS
from qvd.vma.slaveproto import request_head

__all__ = [
    "KEY",
    "Channel",
    "fuse_works",
    "mounted",
    "open_channel",
    "request",
    "share_head",
    "wait_for",
]

KEY = "k3y-of-this-session"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def fuse_works() -> bool:
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError:
        return False
    return all(
        subprocess.run(["which", tool], capture_output=True, check=False).returncode == 0
        for tool in ("sshfs", "fusermount3")
    ) and os.access(SFTP_SERVER, os.X_OK)


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point now (mountinfo escapes spaces and the like)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                         line.split(" ")[4]) for line in fh]  # fmt: skip
    return str(path) in points


def wait_for(check: object, timeout: float = 30.0) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


@dataclass
class Channel:
    """One slave connection: the desktop's socket, the server's process."""

    desktop: socket.socket
    server: subprocess.Popen[bytes]
    sftp: subprocess.Popen[bytes] | None = None
    status: int = 0
    body: str = ""
    stderr: list[str] = field(default_factory=list)

    def end(self) -> None:
        """The desktop goes away: its sftp-server and its socket end."""
        if self.sftp is not None and self.sftp.poll() is None:
            self.sftp.terminate()
            self.sftp.wait(10)
        with contextlib.suppress(OSError):
            self.desktop.close()


def _answer(sock: socket.socket) -> tuple[int, str]:
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            return 0, data.decode("latin-1")
        data += chunk
    lines = data.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    if status == 101:
        return status, ""
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length")
    )
    body = b""
    while len(body) < length and (chunk := sock.recv(length - len(body))):
        body += chunk
    return status, body.decode()


def request(
    head: bytes,
    base: Path,
    *,
    enabled: bool = True,
    key: str = KEY,
    folder: Path | None = None,
    max_open: int | None = None,
    slots: Path | None = None,
) -> Channel:
    """Run the server on a socketpair, send ``head``, read its answer; on 101 with a
    ``folder``, serve it with a real sftp-server on the desktop's end."""
    desktop, theirs = socket.socketpair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QVD_")}
    env.update({ENV_KEY: key, ENV_ENABLED: "1" if enabled else "0", ENV_BASE: str(base)})
    if max_open is not None:
        env[ENV_MAX_OPEN] = str(max_open)
    if slots is not None:
        env[ENV_SLOTS] = str(slots)
    server = subprocess.Popen(
        [sys.executable, "-m", "qvd.client.slaveserver"],
        stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    theirs.close()
    desktop.settimeout(60)
    desktop.sendall(head)
    channel = Channel(desktop=desktop, server=server)
    channel.status, channel.body = _answer(desktop)
    if channel.status == 101 and folder is not None:
        desktop.settimeout(None)
        channel.sftp = subprocess.Popen(
            [SFTP_SERVER, "-d", str(folder)], stdin=desktop.fileno(), stdout=desktop.fileno()
        )
    return channel


def share_head(name: str, key: str = KEY, method: str = "GET") -> bytes:
    return request_head(method, f"/shares/{name}", key, "qvd:sftp/1.0")


@contextlib.contextmanager
def open_channel(head: bytes, base: Path, **kwargs: object) -> Iterator[Channel]:
    """``request`` that always ends the channel and the server (unmounting) after."""
    channel = request(head, base, **kwargs)  # type: ignore[arg-type]
    try:
        yield channel
    finally:
        channel.end()
        try:
            channel.server.wait(30)
        except subprocess.TimeoutExpired:
            channel.server.kill()
            channel.server.wait()
        assert channel.server.stderr is not None
        channel.stderr.append(channel.server.stderr.read().decode(errors="replace"))
        channel.server.stderr.close()
