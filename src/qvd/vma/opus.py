"""Opus on the media channel: the desktop's encoder (what the project's client gets when it
asks for compressed sound; ``ChannelPlan.opus``).

The session's PulseAudio plays into a null sink (``QVD_Audio``) instead of the tunnel;
GStreamer, run as the session's user, reads that sink's monitor and writes Opus over
the NX multimedia channel (``127.0.0.1:<7000+display>``, where nxagent listens):

    pulsesrc device=QVD_Audio.monitor ! audioconvert ! audioresample
      ! audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=… frame-size=…
      ! rtpopuspay pt=96 ! rtpstreampay ! tcpclientsink host=127.0.0.1 port=…

RTP in RFC 4571 framing (``rtpstreampay``: a 2-byte length before each packet) survives
a byte stream and adds 14 bytes a frame; the client undoes it (``qvd.client.opus``).
Every argument is built here from validated values (the bitrate and frame size are the
VMA's own settings, checked; the port is the display's), never through a shell.

The encoder exits when the channel goes (the client left, or nxagent has no listener
yet); ``OpusEncoder`` starts it again after a second while the session is connected, and
ends it, by its process group, on suspend and stop.

Standard library only (the VMA runs on the image's own ``python3``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from qvd.vma.procs import end_group

__all__ = [
    "FRAME_SIZES_MS",
    "OpusEncoder",
    "OpusOptions",
    "OpusSettingError",
    "encoder_argv",
    "opus_options",
]

log = logging.getLogger(__name__)

FRAME_SIZES_MS = (5, 10, 20, 40, 60)  # what opusenc's frame-size takes (ms)
MIN_BITRATE, MAX_BITRATE = 6000, 510000  # Opus's range (bit/s)
DEFAULT_BITRATE = 64000  # stereo music at 64 kbit/s: ~1/22 of 44.1 kHz 16-bit PCM
DEFAULT_FRAME_MS = 20
RTP_PAYLOAD = 96  # the dynamic payload type both ends agree on
RESTART_DELAY = 1.0  # seconds between an encoder's exit and the next one


class OpusSettingError(ValueError):
    """A ``vma.audio.opus.*`` setting that is not acceptable (the reason is the text)."""


@dataclass(frozen=True, slots=True)
class OpusOptions:
    bitrate: int = DEFAULT_BITRATE  # bit/s
    frame_ms: int = DEFAULT_FRAME_MS


def _int_setting(setting: Callable[[str], str], key: str, default: int) -> int:
    raw = (setting(key) or "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 7:
        raise OpusSettingError(f"{key} must be a whole number, not {raw[:40]!r}")
    return int(raw)


def opus_options(setting: Callable[[str], str]) -> OpusOptions:
    """``vma.audio.opus.bitrate`` (bit/s) and ``vma.audio.opus.frame_ms``, checked."""
    bitrate = _int_setting(setting, "vma.audio.opus.bitrate", DEFAULT_BITRATE)
    if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
        raise OpusSettingError(
            f"vma.audio.opus.bitrate must be {MIN_BITRATE}..{MAX_BITRATE}, not {bitrate}"
        )
    frame_ms = _int_setting(setting, "vma.audio.opus.frame_ms", DEFAULT_FRAME_MS)
    if frame_ms not in FRAME_SIZES_MS:
        raise OpusSettingError(
            f"vma.audio.opus.frame_ms must be one of {FRAME_SIZES_MS}, not {frame_ms}"
        )
    return OpusOptions(bitrate, frame_ms)


def encoder_argv(gst_launch: str, sink: str, port: int, options: OpusOptions) -> list[str]:
    """The encoder's command line (``sink``: the PulseAudio sink whose monitor it reads)."""
    if not (sink.isascii() and sink.replace("_", "").isalnum()):
        raise OpusSettingError(f"sink name {sink[:40]!r} is not plain")
    if not 0 < port < 65536:
        raise OpusSettingError(f"port {port} out of range")
    if options.frame_ms not in FRAME_SIZES_MS or not (
        MIN_BITRATE <= options.bitrate <= MAX_BITRATE
    ):
        raise OpusSettingError(f"bad Opus options {options}")
    return [
        gst_launch, "-q",
        "pulsesrc", f"device={sink}.monitor", "buffer-time=40000", "latency-time=10000",
        "!", "audioconvert", "!", "audioresample",
        "!", "audio/x-raw,rate=48000,channels=2",
        "!", "opusenc", f"bitrate={options.bitrate}", f"frame-size={options.frame_ms}",
        "!", "rtpopuspay", f"pt={RTP_PAYLOAD}",
        "!", "rtpstreampay",
        "!", "tcpclientsink", "host=127.0.0.1", f"port={port}", "sync=false",
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class EncoderLaunch:
    """How to run the encoder as the session's user."""

    argv: list[str]
    env: Mapping[str, str]
    uid: int
    gid: int
    groups: list[int]
    cwd: str
    log_file: Path


class OpusEncoder:
    """The encoder process, restarted after a second whenever it exits, until ``stop``."""

    def __init__(self, launch: EncoderLaunch) -> None:
        self._launch = launch
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.starts = 0
        self._thread = threading.Thread(target=self._run, name="qvd-opus", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        launch = self._launch
        with self._lock:
            if self._stopping.is_set():
                return None
            with open(launch.log_file, "ab") as log_file:
                self._proc = subprocess.Popen(
                    launch.argv, stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, env=dict(launch.env), cwd=launch.cwd,
                    user=launch.uid, group=launch.gid, extra_groups=launch.groups,
                    start_new_session=True,
                )  # fmt: skip
            self.starts += 1
            return self._proc

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                proc = self._spawn()
            except OSError as exc:
                log.warning("the Opus encoder cannot start: %s", exc)
                proc = None
            if proc is None and self._stopping.is_set():
                return
            if proc is not None:
                log.info("Opus encoder %d started", proc.pid)
                code = proc.wait()
                if not self._stopping.is_set():
                    log.info("Opus encoder %d exited (%s); again in %.0f s",
                             proc.pid, code, RESTART_DELAY)  # fmt: skip
            self._stopping.wait(RESTART_DELAY)

    def stop(self) -> None:
        """End the encoder (TERM to its group, then KILL) and its restarter."""
        with self._lock:
            self._stopping.set()
            proc, self._proc = self._proc, None
        if proc is not None:
            end_group(proc, grace=3.0)
        self._thread.join(10)


def encoder_env(user_env: Mapping[str, str], pulse_server: str, home: str) -> dict[str, str]:
    """The encoder's environment: the user's, without DISPLAY, on the session's PulseAudio."""
    env = {k: v for k, v in user_env.items() if k not in ("DISPLAY", "GST_PLUGIN_PATH")}
    env.update(PULSE_SERVER=pulse_server, HOME=home)
    env.setdefault("PATH", os.defpath)
    return env
