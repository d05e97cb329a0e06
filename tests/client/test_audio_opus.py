"""The client's Opus sound (``client.audio.compression.enable``) against a real (private)
PulseAudio and real GStreamer: the parameters only this client sends, the decoder port
nxproxy gets as ``media=``, sound arriving at the user's PulseAudio from an Opus stream
framed as the desktop frames it, the byte count it reports, nothing left at close.
(The desktop's encoder with it: tests/vma/test_audio_opus.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from qvd.client.audio import ClientAudio
from qvd.client.devices import ClientSession, client_devices
from qvd.client.settings import ClientSettings, SettingsError, check
from qvd.vma.opus import OpusOptions, encoder_argv
from tests.pulse import PrivatePulse

pytestmark = pytest.mark.timeout(120)
OPUS_ON = {"client.audio.enable": "1", "client.audio.compression.enable": "1"}


@pytest.fixture
def pulse() -> Iterator[PrivatePulse]:
    daemon = PrivatePulse()
    yield daemon
    daemon.close()


def test_only_asked_compression_sends_the_codec() -> None:
    (plain,) = [d for d in client_devices(ClientSettings({"client.audio.enable": "1"}))
                if d.name == "audio"]  # fmt: skip
    assert plain.params() == {"qvd.client.audio.enabled": "1"}
    (opus,) = [d for d in client_devices(ClientSettings(OPUS_ON)) if d.name == "audio"]
    assert opus.params() == {
        "qvd.client.audio.enabled": "1",
        "qvd.client.audio.compression.enable": "1",
        "qvd.client.audio.codec": "opus",
    }
    assert check("client.audio.compression.enable", "1") == "1"
    with pytest.raises(SettingsError):
        check("client.audio.compression.enable", "maybe")


def test_without_gstreamer_the_client_does_not_ask_for_opus(
    capsys: pytest.CaptureFixture[str],
) -> None:
    device = ClientAudio(ClientSettings(OPUS_ON), gst_launch="/nonexistent/gst-launch-1.0")
    assert device.params() == {"qvd.client.audio.enabled": "1"}
    assert "not compressed" in capsys.readouterr().err


def encoder_to(port: int, seconds: float) -> subprocess.Popen[bytes]:
    """The desktop's encoder pipeline with a test tone instead of the sink's monitor."""
    argv = encoder_argv("/usr/bin/gst-launch-1.0", "QVD_Audio", port, OpusOptions())
    source = argv.index("pulsesrc")
    tone = ["audiotestsrc", "freq=440", "volume=0.5", f"num-buffers={int(seconds * 100)}",
            "samplesperbuffer=480", "is-live=true"]  # fmt: skip
    argv[source : argv.index("!")] = tone
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_an_opus_stream_plays_to_the_users_pulseaudio(
    pulse: PrivatePulse, capsys: pytest.CaptureFixture[str]
) -> None:
    device = ClientAudio(ClientSettings(OPUS_ON))
    try:
        (option,) = device.open(ClientSession(slave_key="", env=pulse.env))
        assert device.relay is None
        assert device.receiver is not None
        port = int(option.removeprefix("media="))
        assert port == device.receiver.port
        recorder = pulse.record()
        since = time.monotonic()
        encoder = encoder_to(port, 2.0)
        assert recorder.wait_for_sound(20, since) is not None
        _, errors = encoder.communicate(timeout=30)
        assert encoder.returncode == 0, errors
        end = time.monotonic() + 15
        while not device.receiver.finished and time.monotonic() < end:
            time.sleep(0.05)
        [stats] = device.receiver.finished
        assert stats.ratio < 0.25, stats.line()  # 64 kbit/s Opus vs 1536 kbit/s PCM
        assert stats.line() in capsys.readouterr().err
        assert device.receiver.pids == []
    finally:
        device.close()
    assert vars(device)["receiver"] is None  # (mypy had narrowed it)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the port is gone


def test_close_ends_a_live_decoder(pulse: PrivatePulse) -> None:
    device = ClientAudio(ClientSettings({**OPUS_ON, "client.audio.port": "4713"}))
    (option,) = device.open(ClientSession(slave_key="", env=pulse.env))
    receiver = device.receiver
    assert receiver is not None
    encoder = encoder_to(int(option.removeprefix("media=")), 60)
    try:
        end = time.monotonic() + 20
        while not receiver.pids and time.monotonic() < end:
            time.sleep(0.05)
        [pid] = receiver.pids
        device.close()
        assert receiver.pids == []
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        encoder.kill()
        encoder.communicate()
        device.close()
