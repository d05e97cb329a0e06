"""A private PulseAudio for tests and benchmarks: the client machine's sound server.

``PrivatePulse`` runs ``pulseaudio -n`` with its own configuration, runtime, state and
home directories in a fresh temporary directory (nothing of the machine's user setup is
read or written; it runs as root here, which PulseAudio allows with a warning). It has a
null sink (``qvdtest_null``, the default sink), a private unix socket and, if asked, an
anonymous TCP listener on loopback (what nxproxy's ``media=<port>`` reaches).

``Recorder`` records the null sink's monitor with ``parec`` (16-bit mono) and stamps
every chunk with ``time.monotonic()`` when it arrives, so a test can wait for sound and
a benchmark can tell when the first non-silent chunk came. ``tone_wav`` writes a sine
tone to play. Every process is ended by its PID and the directory removed on ``close``.
"""

from __future__ import annotations

import array
import math
import os
import pwd
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import end_process

__all__ = ["NULL_SINK", "PrivatePulse", "Recorder", "rms", "tone_wav"]

NULL_SINK = "qvdtest_null"
RATE = 44100
SILENCE_FLOOR = 0.02  # RMS (full scale 1.0) above which a chunk is sound, not noise
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def rms(samples: array.array[int]) -> float:
    """Root mean square of signed 16-bit samples, full scale = 1.0."""
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768.0


def tone_wav(path: Path, seconds: float = 3.0, freq: float = 440.0, amplitude: float = 0.5) -> Path:
    """A 16-bit stereo sine tone at 44.1 kHz."""
    frames = bytearray()
    for i in range(int(RATE * seconds)):
        value = int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / RATE))
        frames += struct.pack("<hh", value, value)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))
    return path


@dataclass(frozen=True)
class Chunk:
    at: float  # time.monotonic() when it was read
    samples: array.array[int]


class Recorder:
    """``parec`` of a sink's monitor; chunks (~10 ms) with their arrival times."""

    def __init__(self, env: dict[str, str], source: str) -> None:
        self._proc = subprocess.Popen(
            ["parec", "-d", source, "--format=s16le", f"--rate={RATE}", "--channels=1",
             "--latency-msec=10", "--raw"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        self.chunks: list[Chunk] = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        while data := stream.read1(882 * 2):  # type: ignore[attr-defined]
            at = time.monotonic()
            samples = array.array("h")
            samples.frombytes(data[: len(data) - len(data) % 2])
            with self._lock:
                self.chunks.append(Chunk(at, samples))
                self._lock.notify_all()

    def first_sound(self, since: float = 0.0, floor: float = SILENCE_FLOOR) -> float | None:
        """When the first chunk read after ``since`` had an RMS above ``floor``."""
        with self._lock:
            chunks = list(self.chunks)
        return next((c.at for c in chunks if c.at >= since and rms(c.samples) > floor), None)

    def wait_for_sound(
        self, timeout: float, since: float = 0.0, floor: float = SILENCE_FLOOR
    ) -> float | None:
        """Block until a non-silent chunk arrived after ``since``; its time or None."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                found = self.first_sound(since, floor)
                left = end - time.monotonic()
                if found is not None or left <= 0 or self._proc.poll() is not None:
                    return found
                self._lock.wait(min(left, 0.5))

    def wait_for_quiet(self, quiet: float = 0.5, timeout: float = 15.0) -> bool:
        """Block until no non-silent chunk came for ``quiet`` seconds (the tail of an
        earlier sound must not count as the start of the next one)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                loud = [c.at for c in self.chunks if rms(c.samples) > SILENCE_FLOOR]
            if not loud or time.monotonic() - loud[-1] >= quiet:
                return True
            time.sleep(0.05)
        return False

    def sound_seconds(self, since: float = 0.0, floor: float = SILENCE_FLOOR) -> float:
        """How many seconds of non-silent samples arrived after ``since``."""
        with self._lock:
            chunks = [c for c in self.chunks if c.at >= since]
        return sum(len(c.samples) for c in chunks if rms(c.samples) > floor) / RATE

    def errors(self) -> str:
        return "" if self._proc.poll() is None else self._proc.stderr.read().decode()  # type: ignore[union-attr]

    def close(self) -> None:
        end_process(self._proc)
        self._reader.join(5)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


class PrivatePulse:
    """A PulseAudio daemon of its own (null sink, unix socket, maybe anonymous TCP).

    ``tcp_port`` > 0 loads ``module-native-protocol-tcp`` on 127.0.0.1 at that port
    (anonymous: what nxproxy's ``media=<port>`` reaches); ``None`` loads no TCP listener.
    ``user`` runs the daemon as that user (the directory is made theirs)."""

    def __init__(
        self, *, tcp_port: int | None = None, user: pwd.struct_passwd | None = None
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="qvdpa-", dir="/tmp"))  # a short socket path
        self.dir.chmod(0o711)
        self.socket = self.dir / "rt" / "native"
        self.tcp_port = tcp_port
        self.user = user
        for name in ("rt", "state", "home"):
            (self.dir / name).mkdir(mode=0o700)
            if user is not None:
                os.chown(self.dir / name, user.pw_uid, user.pw_gid)
        lines = [
            f"load-module module-null-sink sink_name={NULL_SINK}",
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1",
        ]
        if tcp_port is not None:
            lines.append(
                f"load-module module-native-protocol-tcp port={tcp_port} listen=127.0.0.1 "
                "auth-anonymous=1"
            )
        lines.append(f"set-default-sink {NULL_SINK}")
        config = self.dir / "client.pa"
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o644)
        self.log = self.dir / "pulseaudio.log"
        runtime, state = str(self.dir / "rt"), str(self.dir / "state")
        env = {**_ENV, "HOME": str(self.dir / "home"), "XDG_RUNTIME_DIR": runtime,
               "PULSE_RUNTIME_PATH": runtime, "PULSE_STATE_PATH": state}  # fmt: skip
        ids: dict[str, object] = {}
        if user is not None:
            ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        with open(self.log, "wb") as log:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
                ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
                 "--system=no", "--realtime=no", "--high-priority=no", "-F", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.dir, **ids,
            )  # fmt: skip
        self._recorders: list[Recorder] = []
        end = time.monotonic() + 30
        while self.pactl("info").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > end:
                text = self.log.read_text(errors="replace")[-2000:]
                self.close()
                raise RuntimeError(f"the private PulseAudio did not start:\n{text}")
            time.sleep(0.05)

    @property
    def server(self) -> str:
        return f"unix:{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client of this daemon (pactl, paplay, parec)."""
        return {**_ENV, "PULSE_SERVER": self.server, "HOME": str(self.dir / "home")}

    def pactl(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pactl", *argv], capture_output=True, text=True, env=self.env, timeout=20, check=False
        )

    def modules(self) -> list[tuple[int, str, str]]:
        """(index, name, arguments) of every loaded module."""
        found = []
        for line in self.pactl("list", "short", "modules").stdout.splitlines():
            index, name, *args = [*line.split("\t"), ""]
            found.append((int(index), name, args[0] if args else ""))
        return found

    def record(self) -> Recorder:
        """A recorder of the null sink's monitor (ended by ``close``)."""
        recorder = Recorder(self.env, f"{NULL_SINK}.monitor")
        self._recorders.append(recorder)
        return recorder

    def close(self) -> None:
        for recorder in self._recorders:
            recorder.close()
        end_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
