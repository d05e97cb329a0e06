#!/usr/bin/env python3
"""Benchmark: container start → VMA ping → ``listening`` → first frame on the client.

Each run starts a fresh container of the ``test`` image (cached, built on first use)
on a private bridge, polls the VMA until it answers, asks for an X session, connects a
real ``nxproxy`` into a private Xvfb as soon as the agent listens, and takes
screenshots until the xterm is on the screen. Times are from the ``lxc-start`` call.

    .venv/bin/python bench/vma_session.py [--runs N] [--quick]

The last line is ``frame_p50_ms=… frame_p95_ms=… ping_p50_ms=…`` (target: frame < 1000).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from pathlib import Path

from benchkit import exit_on_sigterm, percentile
from qvd.di.screenshot import Screenshot, take_screenshot
from qvd.di.testbed import Bridge, NxProxy, Xvfb
from qvd.hkd.backends.lxc.testbed import Container
from qvd.vma.client import VmaClient, VmaError
from vmabench import container_lab

USER = {"qvd.vm.user.name": "bench", "qvd.client.link": "lan"}


def xterm_drawn(shot: Screenshot) -> bool:
    """The white 80x24 xterm covers ~150k pixels; nothing else on the screen is white."""
    return shot.rgb[0::3].count(255) > 100_000


def one_run(image: Path, work: Path, bridge: Bridge, xvfb: Xvfb, host: int) -> dict[str, float]:
    secret = secrets.token_hex(24)
    container = Container(image=image, workdir=work, bridge=bridge, host=host, secret=secret)
    proxy: NxProxy | None = None
    try:
        container.prepare()
        client = VmaClient(container.address, secret=secret, timeout=0.2)
        t0 = time.monotonic()
        container.start()
        while True:
            try:
                client.ping()
                break
            except VmaError:
                if time.monotonic() - t0 > 20:
                    raise
                time.sleep(0.005)
        t_ping = time.monotonic()
        client.timeout = 5.0
        cookie = str(client.x_start(USER)["cookie"])
        while client.x_state() != "listening":
            if time.monotonic() - t0 > 20:
                raise TimeoutError("never listening")
            time.sleep(0.005)
        t_listen = time.monotonic()
        proxy = NxProxy(
            display=xvfb.display,
            host=container.address,
            port=4100,
            cookie=cookie,
            nx_display=100,
            root=work / f"nx-{host}",
        )
        while not xterm_drawn(take_screenshot(xvfb.display)):
            if time.monotonic() - t0 > 30:
                raise TimeoutError("xterm never drawn")
            time.sleep(0.01)
        t_frame = time.monotonic()
        return {
            "ping": (t_ping - t0) * 1000,
            "listening": (t_listen - t0) * 1000,
            "frame": (t_frame - t0) * 1000,
        }
    finally:
        if proxy is not None:
            proxy.close()
        container.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 runs (under a minute)")
    args = parser.parse_args()
    exit_on_sigterm()
    runs = 3 if args.quick else args.runs
    with container_lab("800x600x24") as lab:
        results: list[dict[str, float]] = []
        for index in range(runs):
            result = one_run(lab.image, lab.work, lab.bridge, lab.xvfb, host=10 + index)
            results.append(result)
            print(
                f"run {index + 1}: ping {result['ping']:.0f} ms, listening "
                f"{result['listening']:.0f} ms, first frame {result['frame']:.0f} ms",
                flush=True,
            )
        frames = [r["frame"] for r in results]
        pings = [r["ping"] for r in results]
        listens = [r["listening"] for r in results]
        print(f"listening_p50_ms={statistics.median(listens):.0f} runs={runs}")
        print(
            f"frame_p50_ms={statistics.median(frames):.0f} "
            f"frame_p95_ms={percentile(frames, 0.95):.0f} "
            f"ping_p50_ms={statistics.median(pings):.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
