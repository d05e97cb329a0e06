"""The client's sound device against a real (private) PulseAudio: the loopback port it
relays to the user's PulseAudio for nxproxy's ``media=`` plays, and is gone at close; a
configured port is used as is; without a PulseAudio the session goes on without sound.
(Other users are refused: tests/security/test_audio_client_port_other_user.py.)"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.client.audio import ClientAudio, owner_uid, pulse_socket
from qvd.client.devices import ClientSession, client_devices
from qvd.client.settings import ClientSettings
from tests.pulse import PrivatePulse, tone_wav

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pulse() -> Iterator[PrivatePulse]:
    """The user's running PulseAudio (no TCP listener of its own)."""
    daemon = PrivatePulse()
    yield daemon
    daemon.close()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_off_unless_asked_and_the_parameter_it_sends() -> None:
    assert [d.name for d in client_devices(ClientSettings({}))].count("audio") == 0
    off = ClientSettings({"client.audio.enable": "0"})
    assert [d.name for d in client_devices(off)].count("audio") == 0
    on = ClientSettings({"client.audio.enable": "1"})
    (device,) = [d for d in client_devices(on) if d.name == "audio"]
    assert device.params() == {"qvd.client.audio.enabled": "1"}


def test_the_users_pulseaudio_is_relayed_and_nothing_is_loaded_into_it(
    pulse: PrivatePulse, tmp_path: Path
) -> None:
    device = ClientAudio(ClientSettings({"client.audio.enable": "1"}))
    before = pulse.modules()
    try:
        (option,) = device.open(ClientSession(slave_key="", env=pulse.env))
        port = int(option.removeprefix("media="))
        assert device.relay is not None
        assert device.relay.port == port
        assert pulse.modules() == before  # no anonymous listener in the user's PulseAudio
        # what nxproxy will connect the multimedia channel to plays on the user's sink
        recorder = pulse.record()
        since = time.monotonic()
        played = subprocess.run(
            ["paplay", str(tone_wav(tmp_path / "tone.wav", seconds=1.0))],
            env={**pulse.env, "PULSE_SERVER": f"tcp:127.0.0.1:{port}"},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert played.returncode == 0, played.stderr
        assert recorder.wait_for_sound(10, since) is not None
        assert device.relay.refused == 0
    finally:
        device.close()
    assert not listening(port)
    device.close()  # a second close does nothing


def test_the_server_string_and_the_socket_owner(tmp_path: Path) -> None:
    assert pulse_socket("Server String: /run/user/1000/pulse/native\n") == (
        "/run/user/1000/pulse/native"
    )
    assert pulse_socket("Server String: unix:/tmp/p/native") == "/tmp/p/native"
    assert pulse_socket("Server String: tcp:10.0.0.1:4713") is None
    assert pulse_socket("Server Name: pulseaudio") is None
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 "
        "0 1 1 0\n"
        "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0 "
        "0 2 1 0\n"
    )
    assert owner_uid(("127.0.0.1", 0xD431), ("127.0.0.1", 0x1F90), table) == 1000
    assert owner_uid(("127.0.0.1", 0x1F90), ("127.0.0.1", 0xD431), table) == 0
    assert owner_uid(("127.0.0.1", 1), ("127.0.0.1", 2), table) is None


def test_a_configured_port_is_used_and_nothing_is_loaded(pulse: PrivatePulse) -> None:
    device = ClientAudio(ClientSettings({"client.audio.enable": "1", "client.audio.port": "4713"}))
    before = pulse.modules()
    assert device.open(ClientSession(slave_key="", env=pulse.env)) == ["media=4713"]
    device.close()
    assert pulse.modules() == before


def test_without_pulseaudio_the_session_goes_on_without_sound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = ClientAudio(ClientSettings({"client.audio.enable": "1"}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PULSE_SERVER": f"unix:{tmp_path}/no-such-socket"}  # fmt: skip
    assert device.open(ClientSession(slave_key="", env=env)) == []
    device.close()
    err = capsys.readouterr().err
    assert "no PulseAudio" in err
    assert "without sound" in err
