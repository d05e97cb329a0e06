#!/usr/bin/env python3
"""Benchmark of the node's DHCP lease path (what a VM row change costs the HKD).

A node network (bridge, guard route, nft tables with the DHCP holes) is set up by
``NodeNetwork.ensure`` on a free private /24 with a unique bridge name, and the node's
dnsmasq is started on it. Then N VM rows (addresses taken from a /16 that is only
data: nothing is routed or sent there) go through the HKD's lease book into the
hosts file: a first sync (render, atomic rewrite, SIGHUP), a sync with nothing
changed (what every poll costs; median of 5), a sync with one VM moved, and the time
until dnsmasq reports it has read the file again. Everything is removed at the end, failures
included (dnsmasq by its PID). Root only; no packet is sent.

    .venv/bin/python bench/dhcp.py [--quick] [--leases N]

The last line is ``start_ms=… sync_ms=… noop_sync_ms=… change_sync_ms=… reload_ms=…
leases=N``.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchkit import exit_on_sigterm, free_subnet
from qvd.hkd.dhcp import DhcpSettings, LeaseBook, VmAddress
from qvd.hkd.dnsmasq import Dnsmasq
from qvd.hkd.network import NodeNetwork

ROWS_NET = ipaddress.IPv4Network("10.217.0.0/16")  # data only


def _reads(log: Path) -> int:
    try:
        return log.read_text(errors="replace").count("read ")
    except OSError:
        return 0


def _wait_read(log: Path, before: int, timeout: float = 30.0) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if _reads(log) > before:
            return time.perf_counter() - began
        time.sleep(0.002)
    raise RuntimeError(f"dnsmasq did not report reading its hosts file within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 leases instead of 10,000")
    parser.add_argument("--leases", type=int, default=None)
    args = parser.parse_args()
    count = args.leases or (2000 if args.quick else 10000)
    exit_on_sigterm()
    subnet = free_subnet()
    network = NodeNetwork(
        bridge=f"qvdd{secrets.token_hex(3)}", host_address=str(subnet.network_address + 2),
        network=subnet, ip_start=subnet.network_address + 100, vma_port=3030, x_port=4100,
        dhcp=True,
    )  # fmt: skip
    run = Path(tempfile.mkdtemp(prefix="qvd-bench-dhcp-"))
    run.chmod(0o755)
    server: Dnsmasq | None = None
    try:
        network.ensure()
        server = Dnsmasq(
            DhcpSettings(
                enabled=True, bridge=network.bridge, server_address=network.host_address,
                network=subnet, lease_time=3600, dns=False, dns_servers=(),
                run_dir=run / "dhcp",
            )
        )  # fmt: skip
        began = time.perf_counter()
        server.start()
        start = time.perf_counter() - began
        book = LeaseBook(ROWS_NET, "54:52:00", server.set_leases)
        rows = [VmAddress(10000 + i, f"desk-{i}", str(ROWS_NET[256 + i])) for i in range(count)]

        before = _reads(server.log_file)
        began = time.perf_counter()
        book.sync(rows)
        sync = time.perf_counter() - began
        _wait_read(server.log_file, before)

        noops = []
        for _ in range(5):  # what every poll costs when nothing changed
            began = time.perf_counter()
            book.sync(rows)
            noops.append(time.perf_counter() - began)
        noop = statistics.median(noops)

        rows[count // 2] = VmAddress(rows[count // 2].vm_id, "moved", str(ROWS_NET[-2]))
        before = _reads(server.log_file)
        began = time.perf_counter()
        book.sync(rows)
        change = time.perf_counter() - began
        reload = change + _wait_read(server.log_file, before)
        served = len(server.settings.hosts_file.read_text().splitlines())
    finally:
        if server is not None:
            server.stop()
        network.remove(guard=True)
        shutil.rmtree(run, ignore_errors=True)
    print(f"{count} VM rows, {served} leases in the hosts file")
    print(
        f"start_ms={start * 1000:.1f} sync_ms={sync * 1000:.1f} noop_sync_ms={noop * 1000:.1f} "
        f"change_sync_ms={change * 1000:.1f} reload_ms={reload * 1000:.1f} leases={count}"
    )


if __name__ == "__main__":
    main()
