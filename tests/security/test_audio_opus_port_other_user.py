"""Attack: another local user of the client machine feeds the user's speakers (or the
decoder) through the loopback port qvd-client opens for nxproxy's Opus media channel.

Guard: the port accepts only sockets of the user's own uid (the kernel's socket table),
as the plain relay does. Reproduced against the real ``OpusReceiver``: a connection from
``daemon`` is refused before any decoder starts; one of the user's own is served.
"""

from __future__ import annotations

import pwd
import socket
import subprocess
import sys
import time

import pytest

from qvd.client.audio import ClientAudio
from qvd.client.devices import ClientSession
from qvd.client.settings import ClientSettings
from tests.pulse import PrivatePulse

pytestmark = pytest.mark.timeout(120)

_SEND = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    s.sendall(b"\\x00\\x10" + b"x" * 16)
    print("closed" if s.recv(1) == b"" else "answered")
except ConnectionResetError:
    print("closed")
"""


def test_another_local_user_cannot_use_the_opus_port() -> None:
    other = pwd.getpwnam("daemon").pw_uid
    pulse = PrivatePulse()
    device = ClientAudio(
        ClientSettings({"client.audio.enable": "1", "client.audio.compression.enable": "1"})
    )
    try:
        (option,) = device.open(ClientSession(slave_key="", env=pulse.env))
        port = int(option.removeprefix("media="))
        receiver = device.receiver
        assert receiver is not None
        attacker = subprocess.run(
            [sys.executable, "-c", _SEND, str(port)], user=other, group=other,
            extra_groups=[], capture_output=True, text=True, timeout=30, check=False, cwd="/",
        )  # fmt: skip
        assert attacker.returncode == 0, attacker.stderr
        assert attacker.stdout.strip() == "closed"  # connected, then closed on
        assert receiver.refused == 1
        assert receiver.pids == []
        assert receiver.finished == []  # no decoder ran for it

        with socket.create_connection(("127.0.0.1", port)) as own:  # the user's (nxproxy)
            end = time.monotonic() + 10
            while not receiver.pids and time.monotonic() < end:
                time.sleep(0.05)
            assert receiver.pids, "the user's own connection gets a decoder"
            own.shutdown(socket.SHUT_WR)
        assert receiver.refused == 1
    finally:
        device.close()
        pulse.close()
