"""Sound, the client's end: nxproxy connects the session's multimedia channel to a
PulseAudio here (``media=<port>``).

On with ``client.audio.enable`` (off by default: the original's ``audio.enable`` is
empty). The port is ``client.audio.port`` when set (a PulseAudio TCP listener the user
runs); otherwise the device loads ``module-native-protocol-tcp`` on a free loopback
port into the user's running PulseAudio (or PipeWire's pulse server) with ``pactl``,
and unloads it in ``close``. Without a PulseAudio to play to, it says why and the
session goes on without sound.

The desktop's PulseAudio has no cookie of the client's, so that listener is anonymous:
while the session runs, other local users of this machine can reach the user's
PulseAudio on that loopback port, as with the original client.

Parameters sent: ``qvd.client.audio.enabled=1`` (the VMA opens the channel on
``vma.audio.enable``; the original's clients send no such flag, and give nxproxy a
``media=`` port or not).
"""

from __future__ import annotations

import subprocess
import sys

from qvd.client import settings
from qvd.client.devices import ClientSession, free_port

__all__ = ["ClientAudio", "tcp_module_arguments"]

TCP_MODULE = "module-native-protocol-tcp"


def tcp_module_arguments(port: int) -> list[str]:
    return [f"port={port}", "listen=127.0.0.1", "auth-anonymous=1"]


class ClientAudio:
    """The client's sound device (``qvd.client.devices.ClientDevice``)."""

    name = "audio"

    def __init__(self, conf: settings.ClientSettings, pactl: str = "pactl") -> None:
        self._port = conf.get("client.audio.port") or ""
        self._pactl = pactl
        self._module: int | None = None  # what open() loaded into the user's PulseAudio
        self._env: dict[str, str] = {}

    def params(self) -> dict[str, str]:
        return {"qvd.client.audio.enabled": "1"}

    def open(self, session: ClientSession) -> list[str]:
        if self._port:
            return [f"media={int(self._port)}"]
        self._env = dict(session.env)
        port = free_port()
        loaded = self._run("load-module", TCP_MODULE, *tcp_module_arguments(port))
        if loaded is None:
            return []
        try:
            self._module = int(loaded.strip())
        except ValueError:
            self._say(f"pactl load-module answered {loaded.strip()[:80]!r}")
            return []
        return [f"media={port}"]

    def attached(self, session: ClientSession) -> None:
        return None

    def close(self) -> None:
        module, self._module = self._module, None
        if module is not None:
            self._run("unload-module", str(module))

    def _run(self, *argv: str) -> str | None:
        try:
            done = subprocess.run(
                [self._pactl, *argv], capture_output=True, text=True, env=self._env or None,
                timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            self._say(f"cannot run pactl: {exc}")
            return None
        if done.returncode != 0:
            self._say(f"pactl {argv[0]}: {done.stderr.strip()[-200:] or done.returncode}")
            return None
        return done.stdout

    @staticmethod
    def _say(reason: str) -> None:
        print(f"Sound: no PulseAudio to play to ({reason}); the session goes on without sound",
              file=sys.stderr, flush=True)  # fmt: skip
