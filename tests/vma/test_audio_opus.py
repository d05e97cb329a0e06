"""Opus sound on this machine, without a container: the VMA's ``AudioDevice`` with an
Opus plan runs the user's PulseAudio (null sink ``QVD_Audio``) and the GStreamer encoder
as an unprivileged user; a relay of this test stands for nxagent + nxproxy (the NX media
port of the display → the client's port) and the client's ``OpusReceiver`` decodes into
a private PulseAudio's null sink. A tone played in the "desktop" is heard at the client,
the channel carries far fewer bytes than PCM, suspend stops the encoder, resume starts
it again, and a resume by an original-style client swaps back to the tunnel."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qvd.client.opus import OpusReceiver
from qvd.vma.audio import NULL_MODULE, TUNNEL_MODULE
from qvd.vma.channels import ChannelPlan
from tests.pulse import tone_wav
from tests.vma.sound import SoundBench, sound_bench

pytestmark = pytest.mark.timeout(180)


class Relay:
    """A loopback port relayed to ``target`` (what nxagent and nxproxy do for the channel)."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            out = socket.create_connection(("127.0.0.1", self._target))
            self._open += [conn, out]
            threading.Thread(target=self._pump, args=(conn, out), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def drop(self) -> None:
        """The channel goes (the client left)."""
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def close(self) -> None:
        self.drop()
        self._listener.close()


@contextlib.contextmanager
def opus_bench() -> Iterator[tuple[SoundBench, OpusReceiver, Relay]]:
    with sound_bench(ChannelPlan(audio=True, opus=True)) as bench:
        receiver = OpusReceiver(
            "/usr/bin/gst-launch-1.0",
            {"PULSE_SERVER": bench.client.server, "PATH": "/usr/bin:/bin"},
        )
        relay = Relay(receiver.port)
        bench.ctx = dataclasses.replace(bench.ctx, display=relay.port - 7000)
        try:
            yield bench, receiver, relay
        finally:
            bench.device.stopped(bench.ctx)
            relay.close()
            receiver.close()


def modules(bench: SoundBench, name: str) -> list[str]:
    listing = bench.pactl("list", "short", "modules").stdout
    return [line for line in listing.splitlines() if f"\t{name}\t" in line]


def encoder_running(bench: SoundBench) -> bool:
    """The encoder (started by its own thread) runs within 10 s."""
    end = time.monotonic() + 10
    while bench.device.encoder_pid is None and time.monotonic() < end:
        time.sleep(0.05)
    return bench.device.encoder_pid is not None


def hear(bench: SoundBench, wav: Path) -> float:
    recorder = bench.client.record()
    end = time.monotonic() + 30
    while time.monotonic() < end:  # the encoder may still be connecting
        since = time.monotonic()
        played = bench.play(wav)
        assert played.returncode == 0, played.stderr
        if recorder.wait_for_sound(5, since) is not None:
            time.sleep(0.3)
            return recorder.sound_seconds(since)
    log = bench.ctx.log_dir / "opus-encoder.log"
    raise AssertionError(f"no sound at the client; {log.read_text() if log.exists() else ''}")


def test_opus_plays_with_far_fewer_bytes_and_follows_suspend_and_resume() -> None:
    with opus_bench() as (bench, receiver, relay):
        wav = tone_wav(bench.root / "tone.wav", seconds=1.5)
        wav.chmod(0o644)
        bench.device.session_env(bench.ctx)
        bench.device.connected(bench.ctx)
        # QVD_Audio is the null sink the encoder reads, not a tunnel
        assert len(modules(bench, NULL_MODULE)) >= 1
        assert modules(bench, TUNNEL_MODULE) == []
        assert encoder_running(bench)
        assert hear(bench, wav) > 1.0

        # suspend: the encoder ends (its channel connection with it), the daemon stays
        pid = bench.device.pid
        bench.device.suspended(bench.ctx)
        assert bench.device.encoder_pid is None
        end = time.monotonic() + 15
        while not receiver.finished and time.monotonic() < end:
            time.sleep(0.05)
        [stats] = receiver.finished
        assert stats.seconds > 1.0
        assert stats.channel_bytes > 0
        assert stats.ratio < 0.25, stats.line()  # a size ratio: Opus vs PCM for as long
        assert receiver.pids == []  # the connection's decoder ended with it
        assert re.fullmatch(r"Sound: the Opus channel carried \d+ bytes in .*", stats.line())

        # resume: a new encoder, sound again
        bench.device.connected(bench.ctx)
        assert bench.device.pid == pid
        assert encoder_running(bench)
        assert hear(bench, wav) > 1.0

        # the channel drops under it: the encoder comes back by itself
        relay.drop()
        assert hear(bench, wav) > 1.0
        assert relay.connections >= 3

        # an original-style client resumes: the tunnel replaces the null sink
        bench.device.suspended(bench.ctx)
        bench.ctx = dataclasses.replace(bench.ctx, plan=ChannelPlan(audio=True))
        bench.device.connected(bench.ctx)
        assert len(modules(bench, TUNNEL_MODULE)) == 1
        assert [m for m in modules(bench, NULL_MODULE) if "sink_name=QVD_Audio" in m] == []
        assert bench.device.encoder_pid is None

        bench.device.stopped(bench.ctx)
        assert bench.device.pid is None


def test_the_opus_configuration_and_the_encoders_command_line() -> None:
    from qvd.vma.audio import PulsePaths, pulse_config
    from qvd.vma.opus import OpusOptions, OpusSettingError, encoder_argv, opus_options

    text = pulse_config(PulsePaths(Path("/run/user"), 1001), 100, opus=True)
    assert "load-module module-null-sink sink_name=QVD_Audio" in text
    assert "module-tunnel-sink-new" not in text
    assert "module-tunnel-sink-new" in pulse_config(PulsePaths(Path("/run/user"), 1001), 100)

    settings = {"vma.audio.opus.bitrate": "32000", "vma.audio.opus.frame_ms": "10"}
    options = opus_options(lambda key: settings.get(key, ""))
    assert options == OpusOptions(bitrate=32000, frame_ms=10)
    assert opus_options(lambda key: "") == OpusOptions()
    argv = encoder_argv("/usr/bin/gst-launch-1.0", "QVD_Audio", 7100, options)
    assert "device=QVD_Audio.monitor" in argv
    assert argv[argv.index("opusenc") :][:3] == ["opusenc", "bitrate=32000", "frame-size=10"]
    assert argv[-3:] == ["host=127.0.0.1", "port=7100", "sync=false"]
    for bad in ({"vma.audio.opus.bitrate": "999999999"}, {"vma.audio.opus.frame_ms": "25"},
                {"vma.audio.opus.bitrate": "\uff16\uff14000"}):  # fmt: skip
        with pytest.raises(OpusSettingError):
            opus_options(lambda key, bad=bad: bad.get(key, ""))  # type: ignore[misc]
