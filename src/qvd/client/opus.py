"""Opus sound, the client's end (``client.audio.compression.enable``; ``qvd.vma.opus`` is
the desktop's).

nxproxy connects the media channel to a loopback port of ours (``media=<port>``). Each
connection (one per encoder run in the desktop) is accepted only from a socket of this
user's uid (``qvd.client.audio.OwnUidListener``, as the relay's), counted, and fed to its
own GStreamer decoder on stdin:

    fdsrc fd=0 ! application/x-rtp-stream,…,encoding-name=OPUS,payload=96
      ! rtpstreamdepay ! rtpopusdepay ! opusdec ! audioconvert ! audioresample
      ! pulsesink

The decoder plays to the user's PulseAudio through ``PULSE_SERVER`` in its environment
(``tcp:127.0.0.1:<client.audio.port>`` or the ``unix:`` socket ``pactl info`` named):
no path or value of anyone's goes into its command line, which ``gst-launch-1.0`` parses
as a pipeline description. Decoders end (their process group: ``qvd.vma.procs.end_group``)
when their connection does or at ``close``. When a connection ends the client says how
many bytes the channel carried and what 48 kHz stereo 16-bit PCM would have taken for as
long (``OpusStats``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from qvd.client.audio import OwnUidListener
from qvd.vma.procs import end_group

__all__ = ["PCM_BYTES_PER_SECOND", "OpusReceiver", "OpusStats", "decoder_argv"]

RTP_PAYLOAD = 96  # as qvd.vma.opus
PCM_BYTES_PER_SECOND = 48000 * 2 * 2  # what the same sound takes uncompressed
_CAPS = f"application/x-rtp-stream,media=audio,clock-rate=48000,encoding-name=OPUS,payload={RTP_PAYLOAD}"  # noqa: E501


def decoder_argv(gst_launch: str) -> list[str]:
    """The decoder's command line: constants only (its input is stdin, its server the
    environment's ``PULSE_SERVER``)."""
    return [
        gst_launch, "-q", "fdsrc", "fd=0",
        "!", _CAPS, "!", "rtpstreamdepay", "!", "rtpopusdepay", "!", "opusdec",
        "!", "audioconvert", "!", "audioresample",
        "!", "pulsesink", "buffer-time=60000", "latency-time=10000", "sync=false",
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class OpusStats:
    """One connection of the media channel."""

    channel_bytes: int
    seconds: float  # from its first byte to its end

    @property
    def pcm_bytes(self) -> int:
        return int(self.seconds * PCM_BYTES_PER_SECOND)

    @property
    def ratio(self) -> float:
        return self.channel_bytes / self.pcm_bytes if self.pcm_bytes else 0.0

    def line(self) -> str:
        return (
            f"Sound: the Opus channel carried {self.channel_bytes} bytes in "
            f"{self.seconds:.1f} s (PCM: {self.pcm_bytes} bytes; ratio {self.ratio:.3f})"
        )


class OpusReceiver:
    """A loopback port for nxproxy's media channel; a decoder per connection."""

    def __init__(self, gst_launch: str, env: Mapping[str, str]) -> None:
        self._argv = decoder_argv(gst_launch)
        self._env = dict(env)
        self.finished: list[OpusStats] = []
        self._live: dict[socket.socket, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._listener = OwnUidListener(self._serve, "qvd-opus", backlog=4)
        self.port = self._listener.port

    @property
    def refused(self) -> int:
        """Connections from other users."""
        return self._listener.refused

    def _serve(self, conn: socket.socket) -> None:
        try:
            decoder = subprocess.Popen(
                self._argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=self._env, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            print(f"Sound: cannot start the Opus decoder: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        with self._lock:
            if self._closed:
                end_group(decoder)
                conn.close()
                return
            self._live[conn] = decoder
        count, first = 0, 0.0
        sink = decoder.stdin
        assert sink is not None
        with contextlib.suppress(OSError, ValueError):
            while data := conn.recv(65536):
                if not count:
                    first = time.monotonic()
                count += len(data)
                sink.write(data)
                sink.flush()
        stats = OpusStats(count, time.monotonic() - first if count else 0.0)
        conn.close()
        with contextlib.suppress(OSError):
            sink.close()
        end_group(decoder)
        print(stats.line(), file=sys.stderr, flush=True)
        with self._lock:
            self._live.pop(conn, None)
            self.finished.append(stats)

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [proc.pid for proc in self._live.values() if proc.poll() is None]

    def close(self) -> None:
        """Stop listening; end every connection and its decoder (by PID)."""
        with self._lock:
            self._closed = True
            live = list(self._live)
        self._listener.close()
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # its _serve ends the decoder, reports
        self._listener.join_servers(10)
