"""Sound, the client's end: nxproxy connects the session's multimedia channel to a
PulseAudio here (``media=<port>``; nxproxy takes a TCP port only).

On with ``client.audio.enable`` (off by default: the original's ``audio.enable`` is
empty). The port is ``client.audio.port`` when set (a PulseAudio TCP listener the user
runs and secures). Otherwise the device finds the user's running PulseAudio (or
PipeWire's pulse server) with ``pactl info`` and relays a loopback port of its own to
that server's unix socket, where the server knows the relay by its uid (the user's) and
needs no cookie.

Why a relay and not ``module-native-protocol-tcp auth-anonymous=1`` (what the original
client loaded): the desktop's PulseAudio has no cookie of the client's, so that listener
would be anonymous, and for the whole session any local user of this machine could use
the user's PulseAudio through it: record the microphone, or load modules that write
files as the user. The relay accepts a connection only from a socket of the user's own
uid (the kernel's socket table, ``/proc/net/tcp``) and refuses the others.

With ``client.audio.compression.enable`` (default 0) and GStreamer here, the client
also sends ``qvd.client.audio.codec=opus`` (a parameter only this client sends; the
original's clients, which send the compression flag alone, keep the plain tunnel): the
desktop then sends Opus, and ``media=`` is ``qvd.client.opus``'s decoder port instead of
the relay, playing to the same PulseAudio.

Without a PulseAudio to play to, the device says why and the session goes on without
sound. Parameters sent: ``qvd.client.audio.enabled=1`` (the VMA opens the channel on
``vma.audio.enable``; the original's clients send no such flag, and give nxproxy a
``media=`` port or not).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qvd.client import settings
from qvd.client.devices import ClientSession

if TYPE_CHECKING:
    from qvd.client.opus import OpusReceiver

__all__ = ["AudioRelay", "ClientAudio", "OwnUidListener", "owner_uid", "pulse_socket"]

_PROC_NET_TCP = Path("/proc/net/tcp")
OPUS_SETTING = "client.audio.compression.enable"


def pulse_socket(info: str) -> str | None:
    """The unix socket path in ``pactl info``'s "Server String", if it is one."""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Server String":
            server = value.strip().removeprefix("unix:")
            return server if server.startswith("/") else None
    return None


def _hex_endpoint(address: tuple[str, int]) -> str:
    host = socket.inet_aton(address[0])[::-1].hex().upper()  # little-endian, as the kernel
    return f"{host}:{address[1]:04X}"


def owner_uid(
    local: tuple[str, int], remote: tuple[str, int], table: Path = _PROC_NET_TCP
) -> int | None:
    """The uid owning the IPv4 TCP socket ``local`` → ``remote``, from the kernel's table."""
    want = (_hex_endpoint(local), _hex_endpoint(remote))
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and (fields[1], fields[2]) == want:
            return int(fields[7])
    return None


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class OwnUidListener:
    """A loopback TCP port whose connections from a socket of this process's uid (the
    kernel's table: ``owner_uid``) go each to ``serve`` on a thread of their own; the
    others are counted in ``refused`` and closed at once."""

    def __init__(self, serve: Callable[[socket.socket], None], name: str, backlog: int) -> None:
        self._serve = serve
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(backlog)
        self.port = int(self._socket.getsockname()[1])
        self.refused = 0
        self._servers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=name, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._socket.accept()
            except OSError:
                return  # closed
            if owner_uid(peer, ("127.0.0.1", self.port)) != os.getuid():
                self.refused += 1
                conn.close()
                continue
            server = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._servers.append(server)
            server.start()

    def close(self) -> None:
        """Stop accepting (the connections already handed over go on)."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(5)

    def join_servers(self, timeout: float) -> None:
        """Wait for every ``serve`` started (``timeout`` seconds each)."""
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            server.join(timeout)


class AudioRelay:
    """A loopback TCP port relayed to a PulseAudio unix socket, for this uid only."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._listener = OwnUidListener(self._serve, "qvd-audio", backlog=8)
        self.port = self._listener.port

    @property
    def refused(self) -> int:
        """Connections from other users."""
        return self._listener.refused

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # sound in small writes
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.connect(self._target)
        except OSError:
            server.close()
            conn.close()
            return
        with self._lock:
            if self._closed:
                server.close()
                conn.close()
                return
            self._open.update((conn, server))
        back = threading.Thread(target=_pump, args=(server, conn), daemon=True)
        back.start()
        _pump(conn, server)
        back.join()
        with self._lock:
            self._open.difference_update((conn, server))
        conn.close()
        server.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._open)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ClientAudio:
    """The client's sound device (``qvd.client.devices.ClientDevice``)."""

    name = "audio"

    def __init__(
        self, conf: settings.ClientSettings, pactl: str = "pactl",
        gst_launch: str = "gst-launch-1.0",
    ) -> None:  # fmt: skip
        self._port = conf.get("client.audio.port") or ""
        self._pactl = pactl
        self._gst_launch = shutil.which(gst_launch) if conf.flag(OPUS_SETTING) else None
        if conf.flag(OPUS_SETTING) and self._gst_launch is None:
            print(f"Sound: no {gst_launch} here; the sound is not compressed",
                  file=sys.stderr, flush=True)  # fmt: skip
        self.relay: AudioRelay | None = None
        self.receiver: OpusReceiver | None = None

    @property
    def opus(self) -> bool:
        return self._gst_launch is not None

    def params(self) -> dict[str, str]:
        params = {"qvd.client.audio.enabled": "1"}
        if self.opus:
            params.update({"qvd.client.audio.compression.enable": "1",
                           "qvd.client.audio.codec": "opus"})  # fmt: skip
        return params

    def open(self, session: ClientSession) -> list[str]:
        if self._port and self.opus:
            return self._open_opus(session, f"tcp:127.0.0.1:{int(self._port)}")
        if self._port:
            return [f"media={int(self._port)}"]
        try:
            done = subprocess.run(
                [self._pactl, "info"], capture_output=True, text=True, env=session.env,
                timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            self._say(f"cannot run pactl: {exc}")
            return []
        if done.returncode != 0:
            self._say(done.stderr.strip()[-200:] or f"pactl info exited {done.returncode}")
            return []
        target = pulse_socket(done.stdout)
        if target is None:
            self._say("it is not on a local socket; set client.audio.port")
            return []
        if self.opus:
            return self._open_opus(session, f"unix:{target}")
        self.relay = AudioRelay(target)
        return [f"media={self.relay.port}"]

    def _open_opus(self, session: ClientSession, server: str) -> list[str]:
        from qvd.client.opus import OpusReceiver

        assert self._gst_launch is not None
        env = {k: v for k, v in session.env.items() if k != "DISPLAY"}
        env["PULSE_SERVER"] = server
        self.receiver = OpusReceiver(self._gst_launch, env)
        return [f"media={self.receiver.port}"]

    def attached(self, session: ClientSession) -> None:
        return None

    def close(self) -> None:
        relay, self.relay = self.relay, None
        if relay is not None:
            relay.close()
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.close()

    @staticmethod
    def _say(reason: str) -> None:
        print(f"Sound: no PulseAudio to play to ({reason}); the session goes on without sound",
              file=sys.stderr, flush=True)  # fmt: skip
