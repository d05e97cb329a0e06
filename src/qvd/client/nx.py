"""The local end of a session: ``nxproxy -S`` drawing into the user's display, and the
relay between it and the upgraded TLS connection.

``LocalProxy`` is a context manager: on every way out (the session ending, an error,
SIGTERM or SIGINT turned into exceptions by ``main``) it ends nxproxy's process group
and removes the ``qvd-client-nx-<pid>-*`` directory it created (an ``NX_ROOT`` given
by the caller is left alone). A client that could not clean up (SIGKILL) leaves its
directory behind; the next client removes those of processes that no longer exist.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path
from stat import S_ISDIR
from types import TracebackType

__all__ = ["NX_DISPLAY", "PREFIX", "LocalProxy", "no_delay", "relay", "sweep_stale"]

NX_DISPLAY = 40
PREFIX = "qvd-client-nx-"


def no_delay(sock: socket.socket) -> socket.socket:
    """``sock`` with Nagle's algorithm off. The NX link is a chain of request/reply
    round trips (the agent's resume is about ten of them before the first frame); with
    Nagle on, each small write after an unacknowledged one waits for the peer's delayed
    ACK (40 ms on Linux), which made the resume ~400 ms slower."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(tmp: Path | None = None) -> list[Path]:
    """Remove this user's ``qvd-client-nx-<pid>-*`` directories whose client is gone."""
    base = Path(tmp or tempfile.gettempdir())
    removed: list[Path] = []
    for path in base.glob(f"{PREFIX}*-*"):
        pid_text = path.name[len(PREFIX) :].split("-", 1)[0]
        try:
            owner = path.lstat()
        except OSError:
            continue
        if not pid_text.isdigit() or owner.st_uid != os.getuid() or not S_ISDIR(owner.st_mode):
            continue
        if not _alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class LocalProxy:
    """A listener on loopback and the nxproxy that connects to it."""

    def __init__(self, env: dict[str, str], channels: list[str] | None = None) -> None:
        self._env = dict(env)
        self._channels = list(channels or [])  # side channels (qvd.client.devices)
        self._own_root: Path | None = None
        self._listener: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return Path(self._env["NX_ROOT"])

    def __enter__(self) -> LocalProxy:
        try:
            if not self._env.get("NX_ROOT"):
                sweep_stale()
                self._own_root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
                self._env["NX_ROOT"] = str(self._own_root)
            self.root.mkdir(parents=True, exist_ok=True)  # nxproxy panics without it
            self._listener = socket.socket()
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(1)
            port = int(self._listener.getsockname()[1])
            extra = "".join(f",{option}" for option in self._channels)
            options = f"nx/nx,connect=127.0.0.1,port={port}{extra}:{NX_DISPLAY}"
            with open(self.root / "nxproxy.log", "ab") as log:
                self.proc = subprocess.Popen(
                    ["nxproxy", "-S", options], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=log, env=self._env, cwd=self.root, start_new_session=True,
                )  # fmt: skip
        except BaseException:
            self.close()
            raise
        return self

    def accept(self, timeout: float = 30.0) -> socket.socket:
        """nxproxy's connection (it connects right after starting)."""
        assert self._listener is not None
        self._listener.settimeout(timeout)
        local, _ = self._listener.accept()
        self._listener.close()
        return no_delay(local)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._own_root is not None:
            shutil.rmtree(self._own_root, ignore_errors=True)
            self._own_root = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def relay(tls: ssl.SSLSocket, local: socket.socket, first: bytes = b"") -> None:
    """Copy bytes between the upgraded TLS socket and nxproxy until one side ends."""
    tls.settimeout(None)
    local.settimeout(None)
    if first:
        local.sendall(first)
    sel = selectors.DefaultSelector()
    sel.register(tls, selectors.EVENT_READ, local)
    sel.register(local, selectors.EVENT_READ, tls)
    try:
        while True:
            for key, _ in sel.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = src.recv(262144)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    return
                key.data.sendall(data)
                if src is tls:  # drain what TLS already decrypted
                    while tls.pending():
                        key.data.sendall(tls.recv(tls.pending()))
    finally:
        sel.close()
