"""Opus sound, end to end: a real LXC node, a VM with ``vma.audio.enable=1``, the real
``qvd-client`` under Xvfb with ``client.audio.compression.enable=1`` (it sends
``qvd.client.audio.codec=opus``) and a private PulseAudio (a null sink) on this machine.
A tone played in the desktop, as the session's user, goes through the desktop's null
sink, the GStreamer encoder, nxagent's multimedia channel, nxproxy and the client's
decoder to the client's null sink; the channel carries far fewer bytes than PCM would
(the client's count, a size ratio); after a suspend and a resume it plays again; the
desktop's encoder is gone on suspend. (An original client's ``compression.enable``
alone keeps the tunnel: tests/vma/test_channels.py, tests/e2e/test_devices_sound.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.e2e.node import Client, L7rNode, in_vm
from tests.e2e.test_devices_sound import (
    _MAKE_TONE,
    hear,
    session_user,
    sound_desktop,
    user_state,
    vm_logs,
)
from tests.hkd.conftest import wait_for
from tests.hkd.lxcnode import LxcNode
from tests.vma.helpers import wait_for_xterm, xterm_visible

pytestmark = pytest.mark.timeout(900)

_STATS = re.compile(r"Sound: the Opus channel carried (\d+) bytes in ([\d.]+) s \(PCM: (\d+) bytes")


def channel_stats(client: Client) -> list[tuple[int, float, int]]:
    """(bytes, seconds, PCM bytes) of each media channel connection the client reported."""
    return [(int(m[1]), float(m[2]), int(m[3])) for m in _STATS.finditer(client.output())]


def encoders(lxc: LxcNode, vm_id: int) -> list[str]:
    done = in_vm(lxc, vm_id, "pgrep", "-f", "opusenc")
    return done.stdout.split()


def test_opus_sound_plays_compressed_also_after_resume(
    engine: Engine, node: L7rNode, test_image: Path, tmp_path: Path
) -> None:
    with sound_desktop(engine, node, test_image, tmp_path) as desktop:
        lxc, vm_id, pulse, xvfb = node.lxc, desktop.vm_id, desktop.pulse, desktop.xvfb
        connect = desktop.connect
        opus = {"client.audio.enable": "1", "client.audio.compression.enable": "1"}
        first = connect("one", {**opus, "client.audio.port": str(pulse.tcp_port)}, {})
        assert xterm_visible(wait_for_xterm(xvfb.display, 90)), first.output() + vm_logs(lxc, vm_id)
        wait_for(lambda: user_state(engine, vm_id) == "connected", 30, "user_state connected")
        uid, server = session_user(lxc, vm_id)
        made = in_vm(lxc, vm_id, "python3", "-c", _MAKE_TONE, "/tmp/qvd-tone.wav")
        assert made.returncode == 0, made.stderr
        # the desktop's QVD_Audio is the null sink the encoder reads, not a tunnel
        modules = in_vm(lxc, vm_id, "setpriv", f"--reuid={uid}", f"--regid={uid}",
                        "--clear-groups", "env", "-i", f"PULSE_SERVER={server}", "HOME=/tmp",
                        "pactl", "list", "short", "modules").stdout  # fmt: skip
        assert "module-tunnel-sink-new" not in modules, modules
        assert "sink_name=QVD_Audio" in modules, modules

        recorder = pulse.record()
        first_ms = hear(recorder, lxc, vm_id, uid, server)
        steady = sorted(hear(recorder, lxc, vm_id, uid, server) for _ in range(3))
        print(f"audio_opus_first_play_ms={first_ms:.0f} audio_opus_start_ms={steady[1]:.0f}")

        # suspend: the client goes, the desktop's encoder ends; the channel's byte count
        first.close()
        wait_for(lambda: user_state(engine, vm_id) == "disconnected", 30, "disconnected")
        stats = channel_stats(first)
        assert stats, first.output()
        sent = sum(s[0] for s in stats)
        pcm = sum(s[2] for s in stats)
        assert sent > 0
        assert sum(s[1] for s in stats) > 4.0  # four tones of 3 s were heard through it
        assert sent / pcm < 0.25, first.output()  # a size ratio, not a timing
        print(f"audio_opus_ratio={sent / pcm:.3f}")
        wait_for(lambda: not encoders(lxc, vm_id), 30, "the encoder ended on suspend")

        # resume, this time to the PulseAudio's unix socket: sound again, compressed
        second = connect("two", opus, {"PULSE_SERVER": pulse.server})
        wait_for(lambda: user_state(engine, vm_id) == "connected", 60, "connected again")
        assert xterm_visible(wait_for_xterm(xvfb.display, 60)), second.output()
        resumed_ms = hear(recorder, lxc, vm_id, uid, server)
        print(f"audio_opus_start_ms_after_resume={resumed_ms:.0f}")
        assert encoders(lxc, vm_id)
        second.close()
        assert channel_stats(second), second.output()
