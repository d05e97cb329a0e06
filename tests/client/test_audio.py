"""The client's sound device against a real (private) PulseAudio: the TCP listener it
loads for nxproxy's ``media=`` port plays, and is unloaded at close; a configured port
is used as is; without a PulseAudio the session goes on without sound."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.client.audio import TCP_MODULE, ClientAudio
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


def test_a_listener_is_loaded_into_the_users_pulseaudio_and_unloaded(
    pulse: PrivatePulse, tmp_path: Path
) -> None:
    device = ClientAudio(ClientSettings({"client.audio.enable": "1"}))
    session = ClientSession(slave_key="", env=pulse.env)
    try:
        (option,) = device.open(session)
        port = int(option.removeprefix("media="))
        loaded = [m for m in pulse.modules() if m[1] == TCP_MODULE]
        assert len(loaded) == 1
        assert f"port={port}" in loaded[0][2]
        assert "listen=127.0.0.1" in loaded[0][2]
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
    finally:
        device.close()
    assert [m for m in pulse.modules() if m[1] == TCP_MODULE] == []
    assert not listening(port)
    device.close()  # a second close does nothing


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
