#!/usr/bin/env python3
"""Benchmark of a KVM desktop: QEMU started → VMA ready, and → first frame through the
L7R (``qvd-client`` spawned → first non-black pixel on its screen).

A real node (PostgreSQL, HKD with ``vm.hypervisor = kvm``, L7R, bridge, dnsmasq),
made in temporary places and removed at the end, also on failure or SIGTERM, boots
the ``test`` recipe's qcow2 image once:

- ``boot_to_vma_ms``: from the QEMU process's own start time (``/proc/<pid>/stat``,
  no polling error) to the first ``ping`` the guest's VMA answers at the VM's address
  (asked every 50 ms, with the VM's secret, routed through the node's bridge);
- ``frame_ms``: the VM running, a ``qvd-client`` is spawned on an Xvfb of its own and
  the first non-black pixel stamped, as bench/e2e.py measures LXC desktops (a new X
  session: the VMA starts nxagent, which draws the xterm through the L7R);
- ``ram_per_vm_mb``: the PSS of the QEMU process (``smaps_rollup``) once the desktop
  is drawn; ``accel``: what the backend chose (``vm.kvm.accel``, ``--accel``).

``--quick`` boots once and reports, which is all the full run does too (``--runs N``
boots N times, one after the other; at most one guest at a time). A boot under TCG
(no hardware virtualisation on these machines: ``/dev/kvm`` is PVM) is what sets the
time: about 20 s here with the small ``test`` image, but a slower image or a loaded
machine takes over a minute, so the bench does not promise the < 60 s of the others.
The target, ≤ 5 s to VMA ready with a direct kernel boot, needs a real KVM host
(``--accel kvm``). Run as root:

    .venv/bin/python bench/kvm.py [--quick] [--runs N] [--accel auto|kvm|tcg] [--recipe R]

The last line is ``accel=… boot_to_vma_ms=… frame_ms=… ram_per_vm_mb=…`` (medians).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import time
from pathlib import Path

from sqlalchemy import Engine, text

from benchkit import BenchNode, bench_node, cleanup_begins, exit_on_sigterm, run_main
from e2e import PASSWORD, Bench, Client, Desk, Screen
from hkd import command
from l7r import wait_user_state
from qvd.db import hash_password
from qvd.db.vmasecret import derive_vma_secret, master_secret
from qvd.di import ensure_image
from qvd.hkd.health import check_route
from qvd.vma.client import VmaClient, VmaError

BOOT_BUDGET = 300.0  # seconds a TCG boot may take before the bench gives up
MEMORY_MB = 512


# ---- the QEMU process -------------------------------------------------------------------------
def qemu_of(vm_id: int) -> int | None:
    """The PID of the QEMU named ``qvd-<vm_id>``, or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"qemu-system-x86_64") and any(
            a.split(b",")[0] in (f"qvd-{vm_id}".encode(), f"guest=qvd-{vm_id}".encode())
            for a in argv
        ):
            return int(entry.name)
    return None


def started_at(pid: int) -> float:
    """When process ``pid`` started, on the boot clock (CLOCK_BOOTTIME), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for process {pid}")


def accel_of(pid: int) -> str:
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    for flag, value in itertools.pairwise(argv):
        if flag == "-accel":
            return value.split(",")[0]
        if flag == "-enable-kvm":
            return "kvm"
    return "tcg"


# ---- the VMA ----------------------------------------------------------------------------------
def vma_of(engine: Engine, vm_id: int, bridge: str) -> VmaClient:
    with engine.connect() as conn:
        address, attempts = conn.execute(
            text("SELECT v.ip, c.run_attempts FROM vms v JOIN vm_counters c ON c.vm_id = v.id "
                 "WHERE v.id = :v"), {"v": vm_id},
        ).one()  # fmt: skip
        secret = derive_vma_secret(master_secret(conn), vm_id, int(attempts))
    check_route(str(address), bridge)  # the VM's address is on the node's own bridge
    return VmaClient(str(address), secret=secret, timeout=0.5)


def boot(node: BenchNode, engine: Engine, vm_id: int, host: int) -> tuple[int, float]:
    """Start the VM; returns its QEMU PID and the ms from QEMU's start to the VMA's
    first answer."""
    command(engine, [vm_id], "start", host)
    deadline = time.monotonic() + BOOT_BUDGET
    pid = None
    while pid is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no QEMU for VM {vm_id} after {BOOT_BUDGET} s")
        pid = qemu_of(vm_id)
        time.sleep(0.02)
    began = started_at(pid)
    vma = vma_of(engine, vm_id, node.bridge)
    while True:
        try:
            vma.ping()
            answered = time.clock_gettime(time.CLOCK_BOOTTIME)
            break
        except VmaError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"VM {vm_id}: no VMA within {BOOT_BUDGET} s") from None
            if not Path(f"/proc/{pid}").exists():
                raise RuntimeError(f"VM {vm_id}: QEMU {pid} ended during the boot") from None
            time.sleep(0.05)
    return pid, (answered - began) * 1000


def wait_running(engine: Engine, vm_id: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            state = conn.execute(
                text("SELECT vm_state FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id}
            ).scalar()
        if state == "running":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"VM {vm_id} is {state}, not running")
        time.sleep(0.1)


def wait_stopped(engine: Engine, vm_id: int, host: int, timeout: float = 180) -> None:
    command(engine, [vm_id], "stop", host)
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT vm_state, vm_cmd FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id}
            ).one()
        if tuple(row) == ("stopped", None) and qemu_of(vm_id) is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"VM {vm_id} did not stop: {tuple(row)}")
        time.sleep(0.2)


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one boot (a TCG boot: ~1-2 min)")
    parser.add_argument("--runs", type=int, default=None, help="boots, one after the other")
    parser.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    parser.add_argument("--recipe", default="test", help="the image's recipe (test-usb: USB/IP)")
    args = parser.parse_args()
    runs = 1 if args.quick else (args.runs or 1)
    logging.basicConfig(level=logging.WARNING)
    began = time.monotonic()

    cache = os.environ.get("QVD_TEST_DI_CACHE")  # an image cache of one's own, if set
    image = ensure_image(args.recipe, fmt="qcow2", cache=Path(cache) if cache else None)
    boots: list[float] = []
    frames: list[float] = []
    memory: list[float] = []
    accel = "?"
    screen: Screen | None = None
    clients: list[Client] = []
    with bench_node("qvd-bench-kvm-", hypervisor="kvm") as node:
        try:
            engine = node.db.engine
            host, (vm_id,) = node.seed(image, 1, memory=MEMORY_MB)
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET password = :p"), {"p": hash_password(PASSWORD)})
            port = node.start_l7r(**{"vm.kvm.accel": args.accel})
            password_file = node.root / "password"
            password_file.write_text(PASSWORD + "\n")
            screen = Screen(node.root)
            bench = Bench(port=port, screen=screen, root=node.root, password_file=password_file,
                          storage=node.root / "storage")  # fmt: skip
            desk = Desk("kvm", vm_id, "u0")
            for n in range(runs):
                pid, boot_ms = boot(node, engine, vm_id, host)
                accel = accel_of(pid)
                boots.append(boot_ms)
                wait_running(engine, vm_id)
                stamps, client = bench.first_pixel(desk)
                clients.append(client)
                frames.append(stamps["first pixel"])
                memory.append(pss_mb(pid))
                print(f"boot {n + 1} ({accel}): QEMU start → VMA ready {boot_ms:.0f} ms, "
                      f"client spawn → first pixel {stamps['first pixel']:.0f} ms, "
                      f"QEMU PSS {memory[-1]:.0f} MiB", flush=True)  # fmt: skip
                wait_user_state(engine, vm_id, "connected", 60)
                client.stop()
                if n + 1 < runs:
                    wait_stopped(engine, vm_id, host)
            print(f"bench time (image build excluded): {time.monotonic() - began:.1f} s")
            node.figures = (
                f"accel={accel} boot_to_vma_ms={statistics.median(boots):.0f} "
                f"frame_ms={statistics.median(frames):.0f} "
                f"ram_per_vm_mb={statistics.median(memory):.0f}"
            )
        finally:
            cleanup_begins()
            for client in clients:
                client.stop()
            if screen is not None:
                screen.close()
    return 0


if __name__ == "__main__":
    run_main(main)
