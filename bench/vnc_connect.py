#!/usr/bin/env python3
"""Benchmark: the L7R's ``open_vnc`` → first framebuffer update, in a real container.

One container of the ``test`` image on a private bridge. Measured from the call of
``qvd.l7r.vnc.open_vnc`` (route check, upgrade, VNC auth) to the first
FramebufferUpdate of a full-screen request:

- ``attach_cold``: a browser session on a fresh session (``x_start`` with
  ``qvd.client.transport=vnc`` done, agent listening): the in-VM viewer attaches it;
- ``attach_warm``: the same on a suspended session (the viewer resumes it);
- ``spy``: an administrator's view-only stream while an NX client holds the session.

    .venv/bin/python bench/vnc_connect.py [--runs N] [--quick]

The last line is ``vnc_attach_cold_ms=… vnc_attach_warm_ms=… vnc_spy_ms=…`` (p50).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from benchkit import exit_on_sigterm
from qvd.di.testbed import Bridge, NxProxy, Xvfb
from qvd.hkd.backends.lxc.testbed import Container
from qvd.l7r.vnc import VncStream, open_vnc
from qvd.vma.client import VmaClient, VmaError
from vmabench import container_lab

USER = {"qvd.vm.user.name": "bench", "qvd.client.link": "lan"}
BROWSER = {**USER, "qvd.client.transport": "vnc"}
TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    secret: bytes


async def _first_update(stream: VncStream) -> None:
    stream.writer.write(b"\x01")  # ClientInit
    head = stream.pending + await stream.reader.readexactly(24 - len(stream.pending))
    width, height = struct.unpack(">HH", head[:4])
    (name_length,) = struct.unpack(">I", head[20:24])
    await stream.reader.readexactly(name_length)
    stream.writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    await stream.writer.drain()
    while (await stream.reader.readexactly(1)) != b"\x00":
        pass  # a bell or a colour map: not pixels yet
    await stream.reader.readexactly(3)


def timed(endpoint: Endpoint, *, view_only: bool, attach: bool) -> float:
    async def run() -> float:
        start = time.monotonic()
        stream = await open_vnc(endpoint, view_only=view_only, attach=attach, timeout=TIMEOUT)
        try:
            await asyncio.wait_for(_first_update(stream), TIMEOUT)
            return (time.monotonic() - start) * 1000
        finally:
            await stream.close()

    return asyncio.run(run())


def wait_state(client: VmaClient, wanted: str) -> None:
    end = time.monotonic() + TIMEOUT
    while client.x_state() != wanted:
        if time.monotonic() > end:
            raise TimeoutError(f"the session never became {wanted}")
        time.sleep(0.02)


def measure(image: Path, work: Path, bridge: Bridge, xvfb: Xvfb, runs: int) -> dict[str, float]:
    secret = secrets.token_hex(24)
    container = Container(image=image, workdir=work, bridge=bridge, host=10, secret=secret)
    proxy: NxProxy | None = None
    try:
        container.prepare()
        container.start()
        client = VmaClient(container.address, secret=secret, timeout=5.0)
        end = time.monotonic() + TIMEOUT
        while True:
            try:
                client.ping()
                break
            except VmaError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.02)
        endpoint = Endpoint(container.address, 3030, secret.encode())
        client.x_start(BROWSER)
        if client.x_wait(timeout=20) != "listening":
            raise TimeoutError("the session never listened")
        cold = timed(endpoint, view_only=False, attach=True)
        wait_state(client, "suspended")
        warm = []
        for _ in range(runs):
            warm.append(timed(endpoint, view_only=False, attach=True))
            wait_state(client, "suspended")
        cookie = str(client.x_start(USER)["cookie"])
        wait_state(client, "listening")
        proxy = NxProxy(
            display=xvfb.display,
            host=container.address,
            port=4100,
            cookie=cookie,
            nx_display=100,
            root=work / "nx",
        )
        wait_state(client, "connected")
        spy = [timed(endpoint, view_only=True, attach=False) for _ in range(runs)]
        return {
            "attach_cold": cold,
            "attach_warm": statistics.median(warm),
            "spy": statistics.median(spy),
        }
    finally:
        if proxy is not None:
            proxy.close()
        container.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 runs each (under a minute)")
    args = parser.parse_args()
    exit_on_sigterm()
    runs = 3 if args.quick else args.runs
    with container_lab("1024x768x24") as lab:
        result = measure(lab.image, lab.work, lab.bridge, lab.xvfb, runs)
        print(
            f"vnc_attach_cold_ms={result['attach_cold']:.0f} "
            f"vnc_attach_warm_ms={result['attach_warm']:.0f} "
            f"vnc_spy_ms={result['spy']:.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
