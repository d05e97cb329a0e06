"""Attack: another local user of the client machine uses the user's PulseAudio through
the port qvd-client opens for nxproxy's multimedia channel (to record the microphone,
or load a module that writes files as the user).

The original client loaded ``module-native-protocol-tcp auth-anonymous=1`` into the
user's PulseAudio for the whole session: anyone on the machine could connect. qvd-client
relays its port to the user's unix socket and accepts only sockets of the user's own uid.
Reproduced against a real PulseAudio: ``pactl`` run as ``daemon`` through the port gets
nothing, the same command as the user works, and nothing anonymous is loaded.
"""

from __future__ import annotations

import pwd
import subprocess

import pytest

from qvd.client.audio import ClientAudio
from qvd.client.devices import ClientSession
from qvd.client.settings import ClientSettings
from tests.pulse import PrivatePulse

pytestmark = pytest.mark.timeout(120)


def pactl_info(
    port: int, env: dict[str, str], uid: int | None = None
) -> subprocess.CompletedProcess[str]:
    ids = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        ["pactl", "info"], env={**env, "PULSE_SERVER": f"tcp:127.0.0.1:{port}", "HOME": "/"},
        capture_output=True, text=True, timeout=30, check=False, cwd="/", **ids,
    )  # fmt: skip


def test_another_local_user_cannot_use_the_media_port() -> None:
    other = pwd.getpwnam("daemon").pw_uid
    pulse = PrivatePulse()
    device = ClientAudio(ClientSettings({"client.audio.enable": "1"}))
    try:
        (option,) = device.open(ClientSession(slave_key="", env=pulse.env))
        port = int(option.removeprefix("media="))
        assert device.relay is not None
        assert not [m for m in pulse.modules() if "auth-anonymous=1" in m[2] and "tcp" in m[1]]

        attacker = pactl_info(port, pulse.env, uid=other)
        assert attacker.returncode != 0, attacker.stdout
        assert "Server Name" not in attacker.stdout
        assert device.relay.refused >= 1

        user = pactl_info(port, pulse.env)  # the user's own processes (nxproxy) pass
        assert user.returncode == 0, user.stderr
    finally:
        device.close()
        pulse.close()
