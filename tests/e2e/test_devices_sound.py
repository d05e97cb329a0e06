"""Sound, end to end: a real LXC node, a VM with ``vma.audio.enable=1``, the real
``qvd-client`` under Xvfb with ``client.audio.enable=1`` pointed at a private PulseAudio
(a null sink) on this machine: first by its TCP port (``client.audio.port``), then
through the client's relay to its unix socket. A tone played in the desktop, as the session's user,
arrives at the client's null sink through nxagent's multimedia channel and nxproxy;
it still does after a suspend and a resume; and a client without any PulseAudio still
gets its desktop."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.client.devices import free_port
from qvd.di.testbed import Xvfb
from tests.e2e.devices import set_vm_property, start_client
from tests.e2e.node import Client, L7rNode, in_vm, set_password
from tests.hkd.conftest import runtime, wait_for
from tests.hkd.lxcnode import LxcNode, add_lxc_vm
from tests.pulse import PrivatePulse, Recorder
from tests.vma.helpers import wait_for_xterm, xterm_visible

pytestmark = pytest.mark.timeout(900)

# written into the desktop by its own python3: 3 s of a 440 Hz tone, half scale
_MAKE_TONE = """
import math, struct, sys, wave
with wave.open(sys.argv[1], "wb") as out:
    out.setnchannels(2); out.setsampwidth(2); out.setframerate(44100)
    out.writeframes(b"".join(
        struct.pack("<hh", *(2 * [int(16383 * math.sin(2 * math.pi * 440 * i / 44100))]))
        for i in range(3 * 44100)))
"""
# the desktop's monotonic clock (shared with this machine: no time namespace) just
# before paplay starts, then paplay
_PLAY = (
    "import os, sys, time; print(time.monotonic(), flush=True); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def user_state(engine: Engine, vm_id: int) -> str:
    return str(runtime(engine, vm_id)["user_state"])


def session_user(lxc: LxcNode, vm_id: int) -> tuple[str, str]:
    """(uid, PULSE_SERVER) of the desktop's xterm: what the VMA gave the X session."""
    pid = in_vm(lxc, vm_id, "ps", "-C", "xterm", "-o", "pid=").stdout.split()[0]
    uid = in_vm(lxc, vm_id, "ps", "-o", "uid=", "-p", pid).stdout.strip()
    environ = in_vm(lxc, vm_id, "cat", f"/proc/{pid}/environ").stdout.split("\0")
    server = next((e.split("=", 1)[1] for e in environ if e.startswith("PULSE_SERVER=")), "")
    return uid, server


def play_in_desktop(
    lxc: LxcNode, vm_id: int, uid: str, server: str
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """paplay of the tone as the session's user; (its start on the monotonic clock, run)."""
    done = in_vm(
        lxc, vm_id, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "env", "-i", "PATH=/usr/bin:/bin", f"PULSE_SERVER={server}", "HOME=/tmp",
        "python3", "-c", _PLAY, "paplay", "/tmp/qvd-tone.wav",
    )  # fmt: skip
    started = float(done.stdout.split()[0]) if done.stdout.strip() else time.monotonic()
    return started, done


def vm_logs(lxc: LxcNode, vm_id: int) -> str:
    parts = []
    for name in ("vma.log", "nxagent.log", "pulseaudio.log"):
        done = in_vm(lxc, vm_id, "tail", "-n", "25", f"/var/log/qvd/{name}")
        parts.append(f"{name}:\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def hear(recorder: Recorder, lxc: LxcNode, vm_id: int, uid: str, server: str) -> float:
    """Play the tone in the desktop until the client hears it; ms from paplay's start to
    the first non-silent samples at the client."""
    end, errors = time.monotonic() + 60, ""
    while time.monotonic() < end:  # PulseAudio may still start, its tunnel still connect
        assert recorder.wait_for_quiet(), "the client's sink never fell silent"
        started, played = play_in_desktop(lxc, vm_id, uid, server)
        heard = recorder.wait_for_sound(5, since=started)
        if heard is not None:
            return (heard - started) * 1000
        errors = played.stderr
        time.sleep(0.5)
    raise AssertionError(f"the client never heard the desktop: {errors}\n{vm_logs(lxc, vm_id)}")


@dataclass
class SoundDesktop:
    """A VM with ``vma.audio.enable=1`` on ``node``, its login and password file, a
    private PulseAudio on a free TCP port and an Xvfb; ``connect`` starts a client."""

    node: L7rNode
    tmp_path: Path
    vm_id: int
    login: str
    pulse: PrivatePulse = field(default_factory=lambda: PrivatePulse(tcp_port=free_port()))
    xvfb: Xvfb = field(default_factory=Xvfb)
    clients: list[Client] = field(default_factory=list)

    def connect(self, home: str, settings: dict[str, str], extra_env: dict[str, str]) -> Client:
        client = start_client(
            self.tmp_path / home, display=self.xvfb.display, port=self.node.port,
            login=self.login, password_file=self.tmp_path / "password", vm_id=self.vm_id,
            settings=settings, extra_env=extra_env,
        )  # fmt: skip
        self.clients.append(client)
        return client


@contextmanager
def sound_desktop(
    engine: Engine, node: L7rNode, test_image: Path, tmp_path: Path
) -> Iterator[SoundDesktop]:
    """A SoundDesktop; its clients, Xvfb and PulseAudio closed at the end."""
    vm_id, _ = add_lxc_vm(engine, node.lxc, test_image, 1)
    set_vm_property(engine, vm_id, "vma.audio.enable", "1")
    login = set_password(engine, vm_id, "s3cret!")
    (tmp_path / "password").write_text("s3cret!\n")
    desktop = SoundDesktop(node, tmp_path, vm_id, login)
    try:
        yield desktop
    finally:
        for client in desktop.clients:
            client.close()
        desktop.xvfb.close()
        desktop.pulse.close()


def test_a_tone_in_the_desktop_plays_at_the_client_also_after_resume(
    engine: Engine, node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    with sound_desktop(engine, node, test_image, tmp_path) as desktop:
        lxc, vm_id, pulse, xvfb = node.lxc, desktop.vm_id, desktop.pulse, desktop.xvfb
        connect = desktop.connect
        with_sound = {"client.audio.enable": "1", "client.audio.port": str(pulse.tcp_port)}
        first = connect("one", with_sound, {})
        assert xterm_visible(wait_for_xterm(xvfb.display, 90)), first.output() + vm_logs(lxc, vm_id)
        wait_for(lambda: user_state(engine, vm_id) == "connected", 30, "user_state connected")
        uid, server = session_user(lxc, vm_id)
        assert server.startswith(f"unix:/run/user/{uid}/pulse/"), server
        made = in_vm(lxc, vm_id, "python3", "-c", _MAKE_TONE, "/tmp/qvd-tone.wav")
        assert made.returncode == 0, made.stderr

        recorder = pulse.record()
        first_ms = hear(recorder, lxc, vm_id, uid, server)
        steady = sorted(hear(recorder, lxc, vm_id, uid, server) for _ in range(3))
        print(f"audio_first_play_ms={first_ms:.0f} audio_start_ms={steady[1]:.0f}")

        # suspend (the client goes away) and resume: sound comes back
        first.close()
        wait_for(lambda: user_state(engine, vm_id) == "disconnected", 30, "disconnected")
        # (this time through the client's own relay to the PulseAudio's unix socket)
        second = connect("two", {"client.audio.enable": "1"}, {"PULSE_SERVER": pulse.server})
        wait_for(lambda: user_state(engine, vm_id) == "connected", 60, "connected again")
        assert xterm_visible(wait_for_xterm(xvfb.display, 60)), second.output()
        resumed_ms = hear(recorder, lxc, vm_id, uid, server)
        print(f"audio_start_ms_after_resume={resumed_ms:.0f}")
        second.close()
        wait_for(lambda: user_state(engine, vm_id) == "disconnected", 30, "disconnected")

        # a client that wants sound but has no PulseAudio: it says so, the desktop works
        third = connect("three", {"client.audio.enable": "1"},
                        {"PULSE_SERVER": f"unix:{tmp_path}/no-pulse"})  # fmt: skip
        wait_for(lambda: user_state(engine, vm_id) == "connected", 60, "connected without sound")
        assert xterm_visible(wait_for_xterm(xvfb.display, 60)), third.output()
        wait_for(lambda: "without sound" in third.output(), 30, "the client says why")
        _, played = play_in_desktop(lxc, vm_id, uid, server)
        assert played.returncode == 0, played.stderr  # the desktop's programs still play
        assert third.proc.poll() is None
