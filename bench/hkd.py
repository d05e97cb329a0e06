#!/usr/bin/env python3
"""Benchmark of the node daemon with real LXC containers and a real PostgreSQL.

- claim: a ``vm_cmd = 'start'`` commit → the HKD's claim (``vm_state = 'starting'``),
  as seen by a LISTEN on ``vm_changed``;
- ready: the same commit → ``running`` (container up, VMA answered), one VM at a time;
- burst: N VMs asked to start at once → every one ``running`` (starts per minute);
- RAM: cgroup memory of the idle containers of the burst, per VM.

Everything (cluster, database, bridge, storage) is made in temporary places and
removed at the end.

    .venv/bin/python bench/hkd.py [--quick] [--runs N] [--burst N]

The last line is ``claim_p50_ms=… ready_p50_ms=… starts_per_min=… ram_per_vm_mb=…``
(targets: claim < 50 ms, ready < 500 ms, ≥ 300 starts/min).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, text

from benchkit import cleanup_begins, exit_on_sigterm
from qvd.config import Config
from qvd.db import EmbeddedCluster, Listener, make_engine, upgrade
from qvd.di import ensure_image
from qvd.hkd.backends.lxc import LxcBackend
from qvd.hkd.daemon import Hkd
from qvd.hkd.network import NodeNetwork


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def free_subnet() -> ipaddress.IPv4Network:
    out = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    used = []
    for line in out.splitlines():
        for word in line.split()[:2]:
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(word, strict=False))
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.215.{secrets.randbelow(250) + 2}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24")


def seed(
    engine: Engine,
    image: Path,
    images: Path,
    subnet: ipaddress.IPv4Network,
    count: int,
    host_address: str,
) -> tuple[int, list[int]]:
    images.mkdir(parents=True, exist_ok=True)
    target = images / f"10000-{image.name}"
    shutil.copyfile(image, target)
    with engine.begin() as conn:
        host = conn.execute(
            text("INSERT INTO hosts (name, address) VALUES ('bench', :a) RETURNING id"),
            {"a": host_address},
        ).scalar_one()
        osf = conn.execute(
            text("INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'bench', 256) RETURNING id")
        ).scalar_one()
        di = conn.execute(
            text("INSERT INTO dis (osf_id, path, version) VALUES (:o, :p, 'v1') RETURNING id"),
            {"o": osf, "p": target.name},
        ).scalar_one()
        conn.execute(text("INSERT INTO di_tags (di_id, tag) VALUES (:d, 'default')"), {"d": di})
        conn.execute(text("UPDATE di_runtimes SET state = 'published' WHERE di_id = :d"), {"d": di})
        vms = []
        for n in range(count):
            user = conn.execute(
                text("INSERT INTO users (tenant_id, login) VALUES (1, :l) RETURNING id"),
                {"l": f"u{n}"},
            ).scalar_one()
            vms.append(
                conn.execute(
                    text(
                        "INSERT INTO vms (name, user_id, osf_id, ip) VALUES (:n, :u, :o, :ip) "
                        "RETURNING id"
                    ),
                    {
                        "n": f"vm{n}",
                        "u": user,
                        "o": osf,
                        "ip": str(subnet.network_address + 100 + n),
                    },
                ).scalar_one()
            )
    return int(host), vms


def node_config(bridge: str, subnet: ipaddress.IPv4Network, root: Path, **extra: str) -> Config:
    """A bench node's configuration: LXC on ``bridge``, VMs from .100 of ``subnet``,
    run and storage under ``root``."""
    values = {
        "nodename": "bench",
        "vm.hypervisor": "lxc",
        "vm.network.bridge": bridge,
        "vm.network.ip.start": str(subnet.network_address + 100),
        "vm.network.netmask": "24",
        "path.run": str(root / "run"),
        "path.storage.root": str(root / "storage"),
        **extra,
    }
    return Config().with_overrides(values, source="bench")


def command(engine: Engine, vm_ids: list[int], cmd: str, host: int) -> float:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE vm_runtimes SET host_id = :h, vm_cmd = :c WHERE vm_id = ANY(:v)"),
            {"h": host, "c": cmd, "v": vm_ids},
        )
    return time.monotonic()


def wait_states(
    listener: Listener, vm_ids: set[int], until: str, t0: float, timeout: float = 120
) -> dict[int, dict[str, float]]:
    """Seconds from t0 to the first time each VM was seen in each state, until every VM
    has reached ``until``."""
    seen: dict[int, dict[str, float]] = {vm: {} for vm in vm_ids}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(until in states for states in seen.values()):
            return seen
        for note in listener.wait(0.2):
            vm, state = note.payload.get("vm_id"), str(note.payload.get("vm_state"))
            if vm in seen and state not in seen[vm]:
                seen[vm][state] = time.monotonic() - t0
    missing = [vm for vm, states in seen.items() if until not in states]
    raise RuntimeError(f"VMs {missing} never reached {until}: {seen}")


def teardown(
    root: Path, bridge: str, subnet: ipaddress.IPv4Network, cluster: EmbeddedCluster
) -> None:
    """Remove what a bench node left: containers, bridge, firewall, guard route, database
    and files (also used by bench/l7r.py)."""
    paths = {"path.run": str(root / "run"), "path.storage.root": str(root / "storage")}
    backend = LxcBackend(Config().with_overrides(paths))
    for vm in backend.list_leftovers():
        with contextlib.suppress(Exception):
            backend.kill(vm)
            backend.cleanup(vm)
    NodeNetwork(
        bridge=bridge,
        host_address=str(subnet.network_address + 2),
        network=subnet,
        ip_start=subnet.network_address + 100,
        vma_port=3030,
        x_port=4100,
    ).remove(guard=True)
    cluster.remove()
    shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    parser.add_argument("--runs", type=int, default=None, help="single-VM start/stop cycles")
    parser.add_argument("--burst", type=int, default=None, help="VMs started at once")
    args = parser.parse_args()
    exit_on_sigterm()
    runs = args.runs or (5 if args.quick else 20)
    burst = args.burst or (10 if args.quick else 20)
    logging.basicConfig(level=logging.WARNING)

    image = ensure_image("test")
    root = Path(tempfile.mkdtemp(prefix="qvd-bench-hkd-"))
    root.chmod(0o755)
    subnet = free_subnet()
    bridge = f"qvdb{secrets.token_hex(3)}"
    cluster = EmbeddedCluster(
        datadir=root / "pg", socket_dir=root / "pgsock", port=0, unsafe_fast=True
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        cluster.port = s.getsockname()[1]
    hkd: Hkd | None = None
    try:
        cluster.initialize()
        cluster.start()
        cluster.ensure_database()
        target = cluster.target()
        engine = make_engine(target)
        upgrade(engine)
        host, vm_ids = seed(
            engine, image, root / "storage/images", subnet, burst, str(subnet.network_address + 2)
        )
        config = node_config(bridge, subnet, root, **{"internal.hkd.workers": "12"})
        hkd = Hkd(config, target=target)
        hkd.start()
        backend = hkd.backend
        assert isinstance(backend, LxcBackend)
        claims: list[float] = []
        ready: list[float] = []
        with Listener(target, ["vm_changed"]) as listener:
            # warm-up: unpack the base once, outside the figures
            t0 = command(engine, vm_ids[:1], "start", host)
            wait_states(listener, set(vm_ids[:1]), "running", t0)
            command(engine, vm_ids[:1], "stop", host)
            wait_states(listener, set(vm_ids[:1]), "stopped", time.monotonic())
            for _ in range(runs):
                vm = vm_ids[0]
                t0 = command(engine, [vm], "start", host)
                seen = wait_states(listener, {vm}, "running", t0)[vm]
                claims.append(seen["starting"] * 1000)
                ready.append(seen["running"] * 1000)
                command(engine, [vm], "stop", host)
                wait_states(listener, {vm}, "stopped", time.monotonic())
            t0 = command(engine, vm_ids, "start", host)
            reached = {
                vm: states["running"]
                for vm, states in wait_states(listener, set(vm_ids), "running", t0).items()
            }
            burst_s = max(reached.values())
            time.sleep(2.0)  # let the containers settle to idle
            ram = [backend.memory_usage(v) / 2**20 for v in vm_ids]
            command(engine, vm_ids, "stop", host)
            wait_states(listener, set(vm_ids), "stopped", time.monotonic())
        engine.dispose()
        print(
            f"single VM, {runs} runs: claim p50 {statistics.median(claims):.1f} ms, "
            f"p95 {percentile(claims, 0.95):.1f} ms; ready p50 {statistics.median(ready):.0f} "
            f"ms, p95 {percentile(ready, 0.95):.0f} ms"
        )
        print(
            f"burst of {burst}: all running after {burst_s:.2f} s; ready p50 "
            f"{statistics.median(reached.values()) * 1000:.0f} ms; idle RAM per VM "
            f"{statistics.mean(ram):.1f} MiB"
        )
        print(
            f"claim_p50_ms={statistics.median(claims):.1f} "
            f"claim_p95_ms={percentile(claims, 0.95):.1f} "
            f"ready_p50_ms={statistics.median(ready):.0f} "
            f"ready{burst}_p50_ms={statistics.median(reached.values()) * 1000:.0f} "
            f"starts_per_min={burst / burst_s * 60:.0f} "
            f"ram_per_vm_mb={statistics.mean(ram):.1f}"
        )
        return 0
    finally:
        cleanup_begins()
        if hkd is not None:
            hkd.halt()
        teardown(root, bridge, subnet, cluster)


if __name__ == "__main__":
    sys.exit(main())
