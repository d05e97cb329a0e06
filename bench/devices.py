#!/usr/bin/env python3
"""Benchmark of the session's devices (issue #16): printing, sound and shared folders
through the NX side channels, in one session of the real client.

A real node (PostgreSQL, HKD, L7R, bridge, LXC desktop of the ``test`` image whose OSF
has ``vma.audio.enable``, ``vma.printing.enable`` and ``vma.slave.enable``) and, on this
host as the client machine, ``qvd-client`` under an Xvfb with every device on, a private
cupsd (a file-backed queue), a private PulseAudio (a null sink recorded by ``parec``) and
a shared folder (tests/e2e/devices.py). An LXC container reads the host's clock, so a
time taken in the desktop and one taken on the client are subtracted directly.

- ``print_ms``: ``lp`` started in the desktop → the job written whole on the client (the
  output file's modification time: the client's queue writes it once the job is whole);
- ``audio_start_ms``: ``paplay`` of a 440 Hz tone started in the desktop → the first
  ~10 ms chunk louder than 2 % RMS of full scale recorded at the client's null-sink
  monitor (tests/pulse.py's recorder; includes parec's 10 ms buffer);
- ``audio_opus_start_ms``: the same with the project's client asking for Opus
  (``client.audio.compression.enable=1``: the desktop's GStreamer encoder, the client's
  decoder), in a second connection to the same (resumed) session;
- ``audio_opus_ratio``: the bytes the media channel carried in that connection (the
  client's count, ``qvd.client.opus``) ÷ what 48 kHz stereo 16-bit PCM takes for as
  long (the plain tunnel sends 44.1 kHz stereo 16-bit PCM: 0.92 of that);
- ``share_ratio``: throughput of writing N MiB (random) into ``~/Redirected/<share>``
  in the desktop (``cp`` until it returns: sshfs's close waits for every write's answer
  from the client's sftp-server, so the bytes are on the client; checked by hash)
  ÷ throughput of the same N MiB over a raw slave connection in the same session: the
  bench opens a slave connection as the client does for a share (nxproxy's ``slave=``
  listener, the session's slave key), asks the desktop's slave server for
  ``POST /throughput`` with ``X-QVD-Send: N`` and times the request to the last byte.
  Same nxagent, nxproxy, connection direction, program at the desktop's end
  (``qvd-vma-slave``) and data direction as a share's writes, with no SFTP or FUSE on
  top: the NX ceiling (docs/devices.md).
  Measured as 3 pairs (a share write, then a raw transfer) so that the rest of the
  machine's load weighs on both alike; the figure is the median of the pairs' ratios.

A figure whose device is not in this tree (or does not come up) prints ``nan`` and the
bench says why. Everything is made in temporary places and removed at the end, also on
failure or SIGTERM. Run as root from the repository:

    PYTHONPATH=$PWD/src:$PWD .venv/bin/python bench/devices.py [--quick]

The last line is ``print_ms=… audio_start_ms=… share_ratio=… audio_opus_start_ms=…
audio_opus_ratio=…`` (medians; target:
share_ratio ≥ 0.8), after ``share_mb_s`` and ``raw_slave_mb_s`` on the line before it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from tests.e2e.devices import (
    SHARE,
    DeviceRig,
    device_rig,
    enable_device_properties,
    marker,
    node_overrides,
    osf_of,
    wait_until,
)

from benchkit import bench_node, cleanup_begins, exit_on_sigterm, run_main
from qvd.client.slave import SlaveRefused, request_bytes, upgrade
from qvd.db import hash_password
from qvd.di import ensure_image
from qvd.vma.slaveproto import THROUGHPUT_PROTOCOL

BASEFS_CACHE = Path("/var/cache/qvd/bench-devices-basefs")  # unpacked image, kept
PASSWORD = "bench-password"  # noqa: S105 - a user of a throwaway cluster
FEATURES = {
    "printing": ("qvd.vma.printing", "qvd.client.printing"),
    "sound": ("qvd.vma.audio", "qvd.client.audio"),
    "shares": ("qvd.vma.shares", "qvd.client.shares"),
}


def missing(feature: str) -> str:
    """Why ``feature`` cannot be measured in this tree ('' if it can)."""
    gone = [m for m in FEATURES[feature] if importlib.util.find_spec(m) is None]
    return f"{feature} has not landed ({', '.join(gone)} missing)" if gone else ""


def measured(name: str, runs: int, one: Callable[[int], float]) -> float:
    """The median of ``runs`` calls of ``one(i)`` (ms or MB/s); nan and the reason on
    failure."""
    values = []
    try:
        for i in range(runs):
            values.append(one(i))
    except (AssertionError, RuntimeError, OSError, ValueError) as exc:
        print(f"{name}: nan: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return float("nan")
    print(
        f"{name}: {', '.join(f'{v:.1f}' for v in values)} (median {statistics.median(values):.1f})"
    )
    return statistics.median(values)


def print_ms(rig: DeviceRig, runs: int) -> float:
    why = missing("printing")
    if why:
        print(f"print_ms: nan: {why}")
        return float("nan")
    desk = rig.desktop
    queues = wait_until(desk.queues, 60, "a print queue in the desktop")
    queue = str(queues[0])  # type: ignore[index]

    def one(_: int) -> float:
        mark = marker()
        start, _end = desk.print_text(queue, mark)
        rig.wait_job(mark.encode(), 60)
        return (rig.printed.stat().st_mtime - start) * 1000

    return measured("print_ms", runs, one)


def audio_start_ms(rig: DeviceRig, runs: int) -> float:
    why = missing("sound")
    if why:
        print(f"audio_start_ms: nan: {why}")
        return float("nan")
    desk = rig.desktop
    wait_until(desk.tunnel_sinks, 60, "the desktop's sound tunnel to the client")
    tone = f"{desk.home}/qvd-bench-tone.wav"
    desk.write_tone(tone, 0.5)

    return measured("audio_start_ms", runs, lambda _: tone_ms(rig, tone, "sound"))


def tone_ms(rig: DeviceRig, tone: str, what: str) -> float:
    """ms from ``paplay tone`` started in the desktop to the first sound at the client's
    null sink (``what`` names the sound in the error when none comes within 20 s)."""
    rig.recorder.wait_for_quiet()  # the tail of the run before is no start
    start, _end = rig.desktop.timed("paplay", tone, clock="monotonic")
    heard = rig.recorder.wait_for_sound(20, since=start)
    if heard is None:
        raise AssertionError(f"no {what} at the client's null sink within 20 s")
    return (heard - start) * 1000


_OPUS_STATS = re.compile(r"Sound: the Opus channel carried (\d+) bytes in [\d.]+ s \(PCM: (\d+)")


def audio_opus(root: Path, vm: int, port: int, lxcpath: Path, runs: int) -> tuple[float, float]:
    """(audio_opus_start_ms, audio_opus_ratio): a second client, with Opus, resumes the
    session; the ratio from what it reports when it ends."""
    why = missing("sound") or (
        "" if importlib.util.find_spec("qvd.client.opus") else "qvd.client.opus missing"
    )
    if why:
        print(f"audio_opus_start_ms: nan: {why}")
        return float("nan"), float("nan")
    with device_rig(
        root, lxcpath=lxcpath, l7r_port=port, vm_id=vm, login="u0", password=PASSWORD,
        extra_settings={"client.audio.compression.enable": "1"},
    ) as rig:  # fmt: skip
        desk, recorder = rig.desktop, rig.recorder
        wait_until(desk.session_running, 120, "the session's X programs")
        tone = f"{desk.home}/qvd-bench-tone.wav"
        desk.write_tone(tone, 0.5)

        def warm() -> bool:  # the encoder connects once the client is attached
            recorder.wait_for_quiet()
            start, _end = desk.timed("paplay", tone, clock="monotonic")
            return recorder.wait_for_sound(5, since=start) is not None

        wait_until(warm, 60, "Opus sound at the client")

        start_ms = measured("audio_opus_start_ms", runs, lambda _: tone_ms(rig, tone, "Opus sound"))
        rig.client.stop()
        found = _OPUS_STATS.findall(rig.client.output())
        sent, pcm = sum(int(b) for b, _ in found), sum(int(p) for _, p in found)
        ratio = sent / pcm if pcm else float("nan")
        print(f"audio_opus channel: {sent} bytes, PCM {pcm} bytes")
    return start_ms, ratio


def share_and_raw(rig: DeviceRig, runs: int, size: int) -> tuple[float, float, float]:
    """(share MB/s, raw slave MB/s, share_ratio): medians of ``runs`` pairs, a share write
    then a raw transfer each, so that what else loads the machine weighs on both alike;
    the ratio is the median of the pairs' ratios."""
    desk = rig.desktop
    why = missing("shares")
    source, digest = f"{desk.home}/qvd-bench-share.bin", ""
    if not why:
        try:
            wait_until(lambda: desk.share_mounted(SHARE), 60, f"~/Redirected/{SHARE} mounted")
            desk.check("python3", "-c", "import os, sys; open(sys.argv[1], 'wb').write("
                       "os.urandom(int(sys.argv[2])))", source, str(size))  # fmt: skip
            digest = desk.check("sha256sum", source).split()[0]
        except AssertionError as exc:
            why = str(exc).splitlines()[0]

    def share_one(i: int) -> float:
        name = f"bench-{i}.bin"
        start, end = desk.timed("cp", source, f"{desk.share_path(SHARE)}/{name}", timeout=300)
        local = rig.share / name
        if local.stat().st_size != size or _sha256(local) != digest:
            raise AssertionError(f"{name} on the client is not what the desktop wrote")
        local.unlink()
        return size / (end - start) / 1e6

    def raw_one() -> float:
        """N bytes sent by the desktop's slave server (``POST /throughput``) over a new
        client→desktop slave connection, timed here from the request to the last byte."""
        head = request_bytes("POST", "/throughput", desk.slave_key(), THROUGHPUT_PROTOCOL)
        head = head[:-2] + f"X-QVD-Send: {size}\r\n\r\n".encode()
        start = time.monotonic()
        with upgrade(rig.slave_port(), head) as sock:
            sock.settimeout(120)
            left = size
            while left:
                got = sock.recv(min(left, 1 << 20))
                if not got:
                    raise AssertionError(f"the slave channel closed {left} bytes short")
                left -= len(got)
        return size / (time.monotonic() - start) / 1e6

    shares: list[float] = []
    raws: list[float] = []
    raw_why = ""
    for i in range(runs):
        if not why:
            try:
                shares.append(share_one(i))
            except (AssertionError, OSError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not raw_why:
            try:
                raws.append(raw_one())
            except (AssertionError, OSError, SlaveRefused) as exc:
                raw_why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    nan = float("nan")
    share = statistics.median(shares) if shares and not why else nan
    raw = statistics.median(raws) if raws and not raw_why else nan
    for name, values, reason in (("share_mb_s", shares, why), ("raw_slave_mb_s", raws, raw_why)):
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name}: nan: {reason}" if reason else f"{name}: {shown}")
    ratio = nan
    if share == share and raw == raw:
        pairs = [s / r for s, r in zip(shares, raws, strict=True)]
        ratio = statistics.median(pairs)
        print(f"share/raw per pair: {', '.join(f'{p:.2f}' for p in pairs)}")
    return share, raw, ratio


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fmt(value: float, digits: int = 0) -> str:
    return "nan" if value != value else f"{value:.{digits}f}"


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    parser.add_argument("--mib", type=int, default=None, help="MiB per share/raw transfer")
    args = parser.parse_args()
    runs = 3
    size = (args.mib or (8 if args.quick else 32)) << 20
    began = time.monotonic()
    cache = os.environ.get("QVD_TEST_DI_CACHE")  # a separate image cache, if set
    image = ensure_image("test", cache=Path(cache) if cache else None)
    with bench_node("qvd-bench-devices-") as node:
        try:
            _host, (vm,) = node.seed(image, 1)
            engine = node.db.engine
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET password = :p"),
                             {"p": hash_password(PASSWORD)})  # fmt: skip
            enable_device_properties(engine, osf_of(engine, vm))
            BASEFS_CACHE.mkdir(parents=True, exist_ok=True)
            port = node.start_l7r(**{"path.storage.basefs": str(BASEFS_CACHE), **node_overrides()})
            with device_rig(
                node.root / "client", lxcpath=node.config().get_path("path.run.lxc"),
                l7r_port=port, vm_id=vm, login="u0", password=PASSWORD,
            ) as rig:  # fmt: skip
                connected = time.monotonic()
                try:
                    wait_until(rig.desktop.session_running, 120, "the session's X programs")
                except AssertionError as exc:
                    raise RuntimeError(f"{exc}\n{rig.diagnose()}") from None
                print(f"desktop up {time.monotonic() - connected:.1f} s after the client started "
                      "(the VM was stopped)")  # fmt: skip
                printing = print_ms(rig, runs)
                audio = audio_start_ms(rig, runs)
                share, raw, ratio = share_and_raw(rig, runs, size)
            opus_ms, opus_ratio = audio_opus(
                node.root / "client-opus", vm, port, node.config().get_path("path.run.lxc"), runs
            )
            print(f"{size >> 20} MiB per transfer: share_mb_s={fmt(share, 2)} "
                  f"raw_slave_mb_s={fmt(raw, 2)}")  # fmt: skip
            print(f"bench time (image build excluded): {time.monotonic() - began:.1f} s")
            node.figures = (
                f"print_ms={fmt(printing)} audio_start_ms={fmt(audio)} share_ratio={fmt(ratio, 2)}"
                f" audio_opus_start_ms={fmt(opus_ms)} audio_opus_ratio={fmt(opus_ratio, 3)}"
            )
        finally:
            cleanup_begins()
    return 0


if __name__ == "__main__":
    run_main(main)
