"""The VMA's sound device: the PulseAudio configuration it writes, the session's
environment, and a real PulseAudio run as an unprivileged user whose tunnel sink plays
into a private "client" PulseAudio (its TCP port standing for the NX multimedia port),
through suspend and resume, and stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path

import pytest

from qvd.vma.audio import (
    SINK_NAME,
    TUNNEL_MODULE,
    AudioError,
    PulsePaths,
    pulse_argv,
    pulse_config,
    pulse_env,
)
from qvd.vma.channels import ChannelPlan, plan_channels
from qvd.vma.devices import DEVICES
from tests.pulse import tone_wav
from tests.vma.sound import SoundBench, as_user, sound_bench

pytestmark = pytest.mark.timeout(180)


def test_the_configuration_holds_only_the_vmas_values() -> None:
    paths = PulsePaths(Path("/run/user"), 1001)
    text = pulse_config(paths, 100)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "load-module module-native-protocol-unix socket=/run/user/1001/pulse/native "
        "auth-cookie-enabled=0",
        "load-module module-tunnel-sink-new server=tcp:127.0.0.1:7100 sink_name=QVD_Audio "
        "reconnect_interval_ms=1000",
        "load-module module-always-sink",
    ]
    assert "auth-anonymous" not in text  # only the user's own processes (uid check)
    argv = pulse_argv("/usr/bin/pulseaudio", paths)
    assert argv[-2:] == ["-F", "/run/user/1001/pulse/qvd-session.pa"]
    assert "-n" in argv
    assert "--exit-idle-time=-1" in argv
    assert "--system=no" in argv


def test_the_daemon_environment_has_no_display_and_private_runtime() -> None:
    paths = PulsePaths(Path("/run/user"), 1001)
    env = pulse_env({"HOME": "/home/u", "DISPLAY": ":100", "PULSE_SERVER": "tcp:evil:1"}, paths)
    assert "DISPLAY" not in env
    assert "PULSE_SERVER" not in env
    assert env["XDG_RUNTIME_DIR"] == "/run/user/1001"
    assert env["PULSE_RUNTIME_PATH"] == "/run/user/1001/pulse"
    assert env["PULSE_STATE_PATH"] == "/run/user/1001/pulse/state"


@pytest.mark.parametrize("root", ["/run/us er", "/run/user\nload-module x", "relative", "/a,b"])
def test_a_runtime_root_pulseaudio_would_split_is_refused(root: str) -> None:
    with pytest.raises(AudioError, match="not a plain path"):
        PulsePaths(Path(root), 1001)


def test_the_device_is_registered_and_sound_follows_the_plan() -> None:
    assert [device.name for device in DEVICES()].count("audio") == 1
    allowed = {"vma.audio.enable": "1"}
    assert plan_channels({}, lambda key: allowed.get(key, "")).audio
    # a property overrides the VMA's file; a browser session has no sound
    assert not plan_channels({"vma.audio.enable": "0"}, lambda key: allowed.get(key, "")).audio
    vnc = {"qvd.client.transport": "vnc"}
    assert not plan_channels(vnc, lambda key: allowed.get(key, "")).audio


def daemons_of(uid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            pulse = proc.name.isdigit() and (proc / "comm").read_text().strip() == "pulseaudio"
            if pulse and proc.stat().st_uid == uid:
                found.append(int(proc.name))
    return found


def tunnel_modules(bench: SoundBench) -> list[str]:
    listing = bench.pactl("list", "short", "modules").stdout
    return [line for line in listing.splitlines() if f"\t{TUNNEL_MODULE}\t" in line]


def wait_for_sink(bench: SoundBench, present: bool, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sinks = bench.pactl("list", "short", "sinks").stdout
        if (SINK_NAME in sinks) == present:
            return
        time.sleep(0.1)
    raise AssertionError(f"sink {SINK_NAME} present={not present} after {timeout} s")


def play_and_hear(bench: SoundBench, wav: Path) -> float:
    """Seconds of sound the client's null sink received while the desktop played."""
    recorder = bench.client.record()
    since = time.monotonic()
    played = bench.play(wav)
    assert played.returncode == 0, played.stderr
    assert recorder.wait_for_sound(10, since) is not None, (
        f"no sound at the client; VM log:\n{(bench.ctx.log_dir / 'pulseaudio.log').read_text()}"
    )
    time.sleep(0.5)
    return recorder.sound_seconds(since)


def test_sound_plays_to_the_client_survives_suspend_and_stops() -> None:
    with sound_bench() as bench:
        wav = tone_wav(bench.root / "tone.wav", seconds=1.5)
        wav.chmod(0o644)
        pulse_dir = f"{bench.root}/user/{bench.user.pw_uid}/pulse"
        assert bench.device.session_env(bench.ctx) == {
            "PULSE_SERVER": f"unix:{pulse_dir}/native",
            "PULSE_RUNTIME_PATH": pulse_dir,
        }
        pid = bench.device.pid  # spawned before the desktop's first program
        assert pid is not None
        bench.device.connected(bench.ctx)
        assert bench.device.pid == pid
        # a desktop's own `pulseaudio --start` finds it (its PID file) and starts no other
        again = as_user(bench.user, ["pulseaudio", "--start"], bench.user_env())
        assert again.returncode == 0, again.stderr
        assert daemons_of(bench.user.pw_uid) == [pid]
        # the daemon is the user's, in a runtime directory only the user can enter
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(bench.user.pw_uid)] * 4
        runtime = bench.root / "user" / str(bench.user.pw_uid)
        for directory in (runtime, runtime / "pulse"):
            info = directory.lstat()
            assert stat.S_ISDIR(info.st_mode)
            assert stat.S_IMODE(info.st_mode) == 0o700
            assert info.st_uid == bench.user.pw_uid
        wait_for_sink(bench, True)
        assert play_and_hear(bench, wav) > 1.0

        # suspended: the tunnel is unloaded (streams go to the null sink), the daemon stays
        bench.device.suspended(bench.ctx)
        assert tunnel_modules(bench) == []
        wait_for_sink(bench, False)
        assert bench.device.pid == pid
        # resumed: the tunnel is back and sound plays again
        bench.device.connected(bench.ctx)
        assert len(tunnel_modules(bench)) == 1
        wait_for_sink(bench, True)
        assert bench.device.pid == pid
        assert play_and_hear(bench, wav) > 1.0

        bench.device.stopped(bench.ctx)
        assert bench.device.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_without_sound_in_the_plan_nothing_starts() -> None:
    with sound_bench(ChannelPlan(audio=False)) as bench:
        assert bench.device.session_env(bench.ctx) == {}
        assert bench.device.pid is None
        bench.device.connected(bench.ctx)
        assert bench.device.pid is None
        assert not (bench.root / "user").exists()


def test_a_link_planted_as_the_runtime_dir_is_not_followed() -> None:
    with sound_bench() as bench:
        victim = bench.root / "victim"
        victim.mkdir(mode=0o755)
        (bench.root / "user").mkdir(mode=0o755)
        (bench.root / "user" / str(bench.user.pw_uid)).symlink_to(victim)
        bench.device.connected(bench.ctx)
        assert bench.device.pid is not None
        assert stat.S_ISDIR((bench.root / "user" / str(bench.user.pw_uid)).lstat().st_mode)
        assert list(victim.iterdir()) == []
        assert victim.stat().st_uid == 0
