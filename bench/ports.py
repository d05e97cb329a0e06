#!/usr/bin/env python3
"""Benchmark of the per-port anti-spoofing filter (what a VM start and stop add).

A node network (bridge, guard route, nft tables) is set up by ``NodeNetwork.ensure``
on a free private /24 with a unique bridge name; N ports are admitted one by one
(each an ``nft -f`` transaction, as the HKD does before a VM starts), admitted again
(the no-op the HKD does right after the start), then released. Everything is removed
at the end, failures included. Root only; no packet is sent.

    .venv/bin/python bench/ports.py [--quick] [--ports N]

The last line is ``admit_p50_ms=… admit_p95_ms=… readmit_p50_ms=… release_p50_ms=…
ensure_ms=… ports=N`` (each admit or release is on the path of a VM start or stop).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from benchkit import exit_on_sigterm, free_subnet, percentile
from qvd.hkd.network import NodeNetwork
from qvd.hkd.ports import Port, PortFilter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 ports instead of 100")
    parser.add_argument("--ports", type=int, default=None)
    args = parser.parse_args()
    count = args.ports or (20 if args.quick else 100)
    exit_on_sigterm()  # a timeout's SIGTERM still removes the bridge and its tables
    subnet = free_subnet()
    network = NodeNetwork(
        bridge=f"qvdb{secrets.token_hex(3)}", host_address=str(subnet.network_address + 2),
        network=subnet, ip_start=subnet.network_address + 100, vma_port=3030, x_port=4100,
    )  # fmt: skip
    try:
        began = time.perf_counter()
        network.ensure()
        ensure_ms = (time.perf_counter() - began) * 1000
        ports = PortFilter(network.table)
        admit, readmit, release = [], [], []
        made = [
            Port(f"qvdb{9000 + i}", f"54:52:00:00:{i // 256:02x}:{i % 256:02x}",
                 str(subnet.network_address + 100 + i % 150))
            for i in range(count)
        ]  # fmt: skip
        for port in made:
            began = time.perf_counter()
            ports.admit(port)
            admit.append(time.perf_counter() - began)
            began = time.perf_counter()
            ports.admit(port)
            readmit.append(time.perf_counter() - began)
        for port in made:
            began = time.perf_counter()
            ports.release(port.device)
            release.append(time.perf_counter() - began)
    finally:
        network.remove(guard=True)
    print(f"{count} ports: admit mean {statistics.mean(admit) * 1000:.2f} ms")

    def ms(samples: list[float], q: float) -> float:
        return percentile(samples, q) * 1000

    print(
        f"admit_p50_ms={ms(admit, 0.5):.2f} admit_p95_ms={ms(admit, 0.95):.2f} "
        f"readmit_p50_ms={ms(readmit, 0.5):.3f} release_p50_ms={ms(release, 0.5):.2f} "
        f"ensure_ms={ensure_ms:.1f} ports={count}"
    )


if __name__ == "__main__":
    main()
