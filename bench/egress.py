#!/usr/bin/env python3
"""Benchmark of desktop egress bookkeeping (what a VM start and stop add on a node with
egress on): the node's network with its egress set made by ``NodeNetwork.ensure``, then
N VM addresses admitted to the allowed set one by one (each an ``nft -f`` transaction,
as the HKD does before a VM starts), admitted again (the no-op right after the start),
then released.

The whole run is in a network namespace of its own (the script re-executes itself under
``unshare --net``): the bridge, the uplink (a veth), the nft table and the
``ip_forward`` it turns on vanish with the process. Root only; no packet is sent.

    .venv/bin/python bench/egress.py [--quick] [--vms N]

The last line is ``egress_admit_p50_ms=… egress_admit_p95_ms=… egress_readmit_p50_ms=…
egress_release_p50_ms=… ensure_ms=… vms=N``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import time

from benchkit import exit_on_sigterm, percentile
from qvd.hkd.egress import EgressFilter, EgressRules
from qvd.hkd.network import NodeNetwork

_INSIDE = "QVD_BENCH_EGRESS_NETNS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 VMs instead of 100")
    parser.add_argument("--vms", type=int, default=None)
    args = parser.parse_args()
    if os.environ.get(_INSIDE) != "1":  # a namespace of our own, gone when we exit
        os.environ[_INSIDE] = "1"
        os.execvp("unshare", ["unshare", "--net", sys.executable, *sys.argv])  # noqa: S606
    exit_on_sigterm()
    count = args.vms or (20 if args.quick else 100)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(
        ["ip", "link", "add", "qvdbenchup", "type", "veth", "peer", "name", "qvdbenchfar"],
        check=True,
    )
    subnet = ipaddress.IPv4Network("10.77.0.0/24")
    network = NodeNetwork(
        bridge="qvdbench", host_address="10.77.0.2", network=subnet,
        ip_start=subnet.network_address + 100, vma_port=3030, x_port=4100,
        egress=EgressRules(uplink="qvdbenchup", gateway="10.77.0.2"),
    )  # fmt: skip
    began = time.perf_counter()
    network.ensure()
    ensure_ms = (time.perf_counter() - began) * 1000
    allowed = EgressFilter(network.table)
    admit, readmit, release = [], [], []
    made = [(f"qvd{10000 + i}", str(subnet.network_address + 100 + i % 150)) for i in range(count)]
    for device, address in made:
        began = time.perf_counter()
        allowed.admit(device, address, out=True)
        admit.append(time.perf_counter() - began)
        began = time.perf_counter()
        allowed.admit(device, address, out=True)
        readmit.append(time.perf_counter() - began)
    for device, _address in made:
        began = time.perf_counter()
        allowed.release(device)
        release.append(time.perf_counter() - began)

    def ms(samples: list[float], q: float) -> float:
        return percentile(samples, q) * 1000

    print(
        f"egress_admit_p50_ms={ms(admit, 0.5):.2f} egress_admit_p95_ms={ms(admit, 0.95):.2f} "
        f"egress_readmit_p50_ms={ms(readmit, 0.5):.3f} "
        f"egress_release_p50_ms={ms(release, 0.5):.2f} ensure_ms={ensure_ms:.1f} vms={count}"
    )


if __name__ == "__main__":
    main()
