"""Attack: a value of the client's or of a property smuggles GStreamer pipeline syntax into
the desktop's Opus encoder. ``gst-launch-1.0`` joins its argv and parses it as a pipeline
description, so an argument ``bitrate=64000 ! filesink location=/x`` would add an element
that writes a file as the session's user.

Guards: Opus is on only for the exact codec ``opus`` (``plan_channels``), and every value
in the encoder's argv is an integer checked against a range or a constant
(``opus_options``, ``encoder_argv``). Reproduced against the real VMA sound device (a
real PulseAudio as an unprivileged user): a hostile bitrate or frame size makes
``connected`` fail with the reason, no encoder runs and no file appears.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from qvd.vma.audio import AudioError
from qvd.vma.channels import ChannelPlan, plan_channels
from qvd.vma.opus import OpusOptions, OpusSettingError, encoder_argv
from tests.vma.sound import sound_bench

pytestmark = pytest.mark.timeout(120)


def test_a_hostile_codec_does_not_turn_opus_on() -> None:
    for codec in ("opus ! filesink location=/tmp/x", "opus\n", " opus", "vorbis"):
        params = {"qvd.client.audio.compression.enable": "1", "qvd.client.audio.codec": codec}
        plan = plan_channels(params, lambda key: "1" if key == "vma.audio.enable" else "")
        assert plan.audio
        assert not plan.opus, codec


@pytest.mark.parametrize(
    ("key", "hostile"),
    [
        ("vma.audio.opus.bitrate", "64000 ! filesink location={target}"),
        ("vma.audio.opus.frame_ms", "20 ! filesink location={target}"),
        ("vma.audio.opus.bitrate", "1"),
    ],
)
def test_a_hostile_setting_never_reaches_the_encoders_argv(key: str, hostile: str) -> None:
    with sound_bench(ChannelPlan(audio=True, opus=True)) as bench:
        target = bench.root / "log" / "pwned"  # a place the user may write
        base = bench.ctx.setting
        value = hostile.format(target=target)

        def setting(name: str) -> str:
            return value if name == key else base(name)

        bench.ctx = dataclasses.replace(bench.ctx, setting=setting)
        bench.device.session_env(bench.ctx)
        with pytest.raises(AudioError, match=key.replace(".", r"\.")):
            bench.device.connected(bench.ctx)
        time.sleep(1.0)  # (an encoder, had one started, would have made the file by now)
        assert bench.device.encoder_pid is None
        assert not target.exists()
        assert not (bench.ctx.log_dir / "opus-encoder.log").exists()


def test_the_argv_builder_refuses_what_it_was_not_given_checked() -> None:
    with pytest.raises(OpusSettingError):
        encoder_argv("gst-launch-1.0", "QVD_Audio ! filesink", 7100, OpusOptions())
    with pytest.raises(OpusSettingError):
        encoder_argv("gst-launch-1.0", "QVD_Audio", 7100, OpusOptions(bitrate=10**9))
    argv = encoder_argv("gst-launch-1.0", "QVD_Audio", 7100, OpusOptions())
    assert all(" " not in arg for arg in argv)
    assert Path(argv[0]).name == "gst-launch-1.0"
