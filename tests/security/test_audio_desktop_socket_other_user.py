"""Attack: another user inside the desktop (a second account, a service) uses the
session user's PulseAudio: records what the session plays, or loads modules as them.

The VMA puts the session's PulseAudio socket in ``<path.user.runtime>/<uid>/pulse``
(0700, the user's) and loads ``module-native-protocol-unix`` without anonymous access or
cookies: PulseAudio then admits only peers of its own uid (PulseAudio also keeps its
runtime directory 0700 by itself). Reproduced with the VMA's
``AudioDevice`` running a real PulseAudio as ``nobody``: ``daemon`` cannot reach the
socket, and with the directories opened up (one guard gone) PulseAudio still refuses it,
while the session's user is served.
"""

from __future__ import annotations

import pwd

import pytest

from tests.vma.sound import as_user, sound_bench

pytestmark = pytest.mark.timeout(120)

_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
else:
    print("connected")
"""


def test_another_user_in_the_desktop_cannot_use_the_sessions_pulseaudio() -> None:
    other = pwd.getpwnam("daemon")
    with sound_bench() as bench:
        bench.device.connected(bench.ctx)
        server = bench.device.session_env(bench.ctx)["PULSE_SERVER"]
        socket_path = server.removeprefix("unix:")
        env = {"PATH": "/usr/bin:/bin", "HOME": "/", "PULSE_SERVER": server}

        # guard 1: the socket's directory is the user's alone
        probe = as_user(other, ["python3", "-c", _CONNECT, socket_path], env)
        assert probe.stdout.strip() == "EACCES", probe.stdout + probe.stderr
        assert as_user(other, ["pactl", "info"], env).returncode != 0

        # guard 2: with the directories opened, PulseAudio itself refuses another uid
        runtime = bench.root / "user" / str(bench.user.pw_uid)
        for directory in (runtime, runtime / "pulse"):
            directory.chmod(0o711)
        probe = as_user(other, ["python3", "-c", _CONNECT, socket_path], env)
        assert probe.stdout.strip() == "connected", probe.stdout + probe.stderr
        refused = as_user(other, ["pactl", "load-module", "module-null-sink"], env)
        assert refused.returncode != 0
        assert "denied" in refused.stderr.lower(), refused.stderr
        served = bench.pactl("info")
        assert served.returncode == 0, served.stderr
