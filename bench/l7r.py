#!/usr/bin/env python3
"""Benchmark of the L7R hosted by a real HKD, with a real LXC desktop and PostgreSQL.

- cold connect: the VM is stopped; a client's ``GET /qvd/connect_to_vm`` → its 101
  (host assignment, container start, VMA ``x_start``, nxagent listening); between runs
  the VM is stopped with ``vm_cmd = 'stop'`` and the bench waits for ``stopped``;
- warm reconnect: the VM runs and its nxagent listens (the client of the run before
  went away before sending its NX greeting) → GET → 101;
- relay: bytes per second through one L7R session against a plain ``socat`` TCP relay
  (default options, ``fork``) measured in the same run, alternating, best of the
  repeats; ratio = L7R ÷ socat. Method: a second VM row of the user ``pump`` is made
  to look running at 127.0.0.1, with a real VMA RPC server (stand-in agent) whose
  ``x_start`` names a source/sink process as its X port. After the 101 the client
  sends an NX greeting (the L7R adds the cookie, as for nxagent), then ``down``: the
  sink sends N MiB and the client reads them; ``up``: the client sends N MiB and the
  sink answers one byte when it has them all. socat relays the same greeting and
  bytes between plain TCP sockets; the client and the sink are separate processes
  (the L7R shares its process with the HKD only, as in production), so the L7R's
  side includes the client's TLS and socat's does not. An extra figure
  ``relay_tls_ratio`` compares with socat terminating TLS (``OPENSSL-LISTEN``).
  ``relay_ratio`` is the worse of the two directions;
- lists: client processes doing, in a loop for a few seconds, a new TLS connection,
  Basic auth (argon2id) and ``list_of_vm``; completed logins+lists per second.

Everything (cluster, database, bridge, storage, certificates) is made in temporary
places and removed at the end, also on failure. Traffic goes only to loopback (the
L7R, the socat relays, the sink) and, from the L7R, to the container on the bench's
own bridge (its route is checked). Run as root:

    .venv/bin/python bench/l7r.py [--quick] [--runs N]

The last line is ``cold_p50_ms=… warm_p50_ms=… relay_ratio=… lists_per_s=…`` (targets:
cold < 1500 ms, warm < 150 ms, relay ≥ 0.8).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import multiprocessing.pool
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from benchkit import (
    bench_node,
    cleanup_begins,
    exit_on_sigterm,
    free_port,
    percentile,
    stop_process,
    wait_listening,
)
from hkd import command
from qvd.client.main import exchange
from qvd.client.protocol import ClientProtocol, Switched, VmList, basic_auth
from qvd.db import DatabaseTarget, Listener, hash_password
from qvd.db.vmasecret import derive_vma_secret, master_secret
from qvd.di import ensure_image
from qvd.hkd.health import check_route
from qvd.vma.auth import SecretStore
from qvd.vma.client import VmaClient
from qvd.vma.server import make_server

PASSWORD = "bench-password"  # noqa: S105 - users of a throwaway cluster
PARAMS = {
    "qvd.client.os": "linux",
    "qvd.client.geometry": "800x600",
    "qvd.client.link": "lan",
    "qvd.client.keyboard": "pc105/us",
    "qvd.client.fullscreen": "0",
}
GREETING = b"NXPROXY-3.5.0-3.5.99 stream=default,data=default,%s "
_GREETING = re.compile(rb"^NXPROXY-\S+ (\S*) ")
MIB = 2**20


# ---- client side (also run in spawned processes) ------------------------------------------
def tls_socket(port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=120)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def open_session(port: int, user: str, vm_id: int, infos: list[tuple[float, str]]) -> ssl.SSLSocket:
    """A TLS connection switched to the relay of ``vm_id`` (the 101 has been read);
    ``infos`` gets (time, text) of each 102."""
    sock = tls_socket(port)
    try:
        proto = ClientProtocol("127.0.0.1", basic_auth(user, PASSWORD))
        request = proto.connect_request(vm_id, PARAMS)
        switched = exchange(
            sock, proto, request, lambda info: infos.append((time.monotonic(), info))
        )
        if not isinstance(switched, Switched) or switched.trailing:
            raise RuntimeError(f"expected a bare 101, got {switched!r}")
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True, slots=True)
class PumpJob:
    via: str  # "l7r", "socat" or "socat-tls"
    port: int
    direction: str  # "down" or "up"
    size: int
    user: str = ""
    vm_id: int = 0


def pump(job: PumpJob) -> float:
    """Seconds from the greeting to the last of ``job.size`` bytes (one session)."""
    sock: socket.socket
    if job.via == "l7r":
        sock = open_session(job.port, job.user, job.vm_id, [])
    elif job.via == "socat-tls":
        sock = tls_socket(job.port)
    else:
        sock = socket.create_connection(("127.0.0.1", job.port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        buf = bytearray(MIB)
        view = memoryview(buf)
        t0 = time.perf_counter()
        sock.sendall(GREETING % f"bench{job.direction}={job.size}".encode())
        if job.direction == "down":
            got = 0
            while got < job.size:
                n = sock.recv_into(view)
                if not n:
                    raise RuntimeError(f"{job.via}: closed after {got} of {job.size} bytes")
                got += n
        else:
            left = job.size
            while left:
                n = min(left, len(view))
                sock.sendall(view[:n])
                left -= n
            if sock.recv(1) != b"K":
                raise RuntimeError(f"{job.via}: the sink did not confirm {job.size} bytes")
        return time.perf_counter() - t0


def lists_worker(port: int, user: str, start_at: float, duration: float) -> list[float]:
    """Latencies (s) of login+list cycles, each on a new TLS connection, that finish
    within ``[start_at, start_at + duration]``."""
    auth = basic_auth(user, PASSWORD)
    done: list[float] = []
    time.sleep(max(0.0, start_at - time.monotonic()))
    end = start_at + duration
    while True:
        t0 = time.monotonic()
        with tls_socket(port) as sock:
            proto = ClientProtocol("127.0.0.1", auth)
            if not isinstance(exchange(sock, proto, proto.list_request()), VmList):
                raise RuntimeError("list_of_vm did not answer a list")
        t1 = time.monotonic()
        if t1 > end:
            return done
        done.append(t1 - t0)


def ready(_: int) -> int:
    return os.getpid()


# ---- the stand-in X port: a byte source/sink (a spawned process) -------------------------
def _sink_one(conn: socket.socket) -> None:
    with conn:
        held = b""
        match = None
        while match is None:
            data = conn.recv(65536)
            if not data:
                return
            held += data
            match = _GREETING.match(held)
        options = dict(item.split(b"=", 1) for item in match.group(1).split(b",") if b"=" in item)
        rest = len(held) - match.end()
        if b"benchdown" in options:
            size = int(options[b"benchdown"])
            block = memoryview(bytes(MIB))
            while size:
                n = min(size, len(block))
                conn.sendall(block[:n])
                size -= n
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
        elif b"benchup" in options:
            left = int(options[b"benchup"]) - rest
            buf = bytearray(MIB)
            while left > 0:
                n = conn.recv_into(buf)
                if not n:
                    return
                left -= n
            conn.sendall(b"K")
            while conn.recv(65536):
                pass


def sink_server(report: Any) -> None:
    """Listen on loopback, report the port, serve each connection in a thread."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    report.put(server.getsockname()[1])
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_sink_one, args=(conn,), daemon=True).start()


# ---- the stand-in VMA of the relay VM -------------------------------------------------------
@dataclass
class PumpAgent:
    """The VMA's agent side for the relay VM: its 'X port' is the sink."""

    port: int

    def x_state(self) -> str:
        return "listening"

    def x_wait(self, leave: frozenset[str], timeout: float) -> str:
        return "listening"

    def x_start(self, params: Mapping[str, str], peer: str) -> dict[str, object]:
        return {"x_state": "listening", "cookie": "benchcookie", "display": 100, "port": self.port}

    def x_suspend(self) -> str:
        return "suspended"

    def x_stop(self) -> str:
        return "stopped"

    def poweroff(self) -> Callable[[], None]:
        return lambda: None

    def expire(self, params: Mapping[str, str]) -> None:
        return None


# ---- set-up helpers --------------------------------------------------------------------------
def add_users(engine: Engine, osf_login: str) -> tuple[int, int]:
    """Passwords for the seeded users; the ``pump`` user with its relay VM (made to look
    running at loopback later). Returns (the seeded user's VM, the relay VM)."""
    hashed = hash_password(PASSWORD)
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET password = :p"), {"p": hashed})
        vm = conn.execute(
            text("SELECT v.id FROM vms v JOIN users u ON u.id = v.user_id WHERE u.login = :l"),
            {"l": osf_login},
        ).scalar_one()
        user = conn.execute(
            text("INSERT INTO users (tenant_id, login, password) VALUES (1, 'pump', :p) "
                 "RETURNING id"), {"p": hashed},
        ).scalar_one()  # fmt: skip
        pump_vm = conn.execute(
            text("INSERT INTO vms (name, user_id, osf_id) SELECT 'pump', :u, osf_id FROM vms "
                 "WHERE id = :v RETURNING id"), {"u": user, "v": vm},
        ).scalar_one()  # fmt: skip
    return int(vm), int(pump_vm)


def stop_vm(engine: Engine, listener: Listener, vm_id: int, host: int) -> None:
    """``vm_cmd = 'stop'``, then wait until the HKD has released the VM (a ``stopped``
    notification alone may be an old one, or come before ``host_id`` is cleared)."""
    listener.wait(0)
    command(engine, [vm_id], "stop", host)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT vm_state, host_id, vm_cmd FROM vm_runtimes WHERE vm_id = :v"),
                {"v": vm_id},
            ).one()
        if tuple(row) == ("stopped", None, None):
            return
        listener.wait(0.1)
    raise RuntimeError(f"VM {vm_id} did not stop: {tuple(row)}")


def wait_user_state(engine: Engine, vm_id: int, state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            now = conn.execute(
                text("SELECT user_state FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id}
            ).scalar()
        if now == state:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"VM {vm_id}: user_state {now}, never {state}")
        time.sleep(0.01)


@contextlib.contextmanager
def relay_vm(engine: Engine, vm_id: int, sink_port: int, root: Path) -> Iterator[None]:
    """The relay VM 'running' at loopback, answered by a real VMA RPC server."""
    with engine.begin() as conn:
        secret = derive_vma_secret(master_secret(conn), vm_id, 0)
    secret_file = root / "pump-vma.secret"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    vma = make_server("127.0.0.1", 0, PumpAgent(sink_port), SecretStore(secret_file, environ={}))
    thread = threading.Thread(target=vma.serve_forever, name="pump-vma", daemon=True)
    thread.start()
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE vm_runtimes SET vm_state = 'running', vm_address = '127.0.0.1', "
                     "vm_vma_port = :p, vm_x_port = :x WHERE vm_id = :v"),
                {"p": vma.server_address[1], "x": sink_port, "v": vm_id},
            )  # fmt: skip
        yield
    finally:
        vma.shutdown()
        vma.server_close()


@contextlib.contextmanager
def socat(args: list[str]) -> Iterator[None]:
    proc = subprocess.Popen(
        ["socat", *args], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        stop_process(proc, 10, group=True)  # socat and its fork children


# ---- the measurements -----------------------------------------------------------------------
def timed_connect(port: int, vm: int) -> tuple[float, str]:
    """ms from the TCP connect to the 101, and when (ms) each 102 came."""
    infos: list[tuple[float, str]] = []
    t0 = time.monotonic()
    open_session(port, "u0", vm, infos).close()
    took = (time.monotonic() - t0) * 1000
    steps = ", ".join(f"{(t - t0) * 1000:.0f} {' '.join(info.split()[:2])}" for t, info in infos)
    return took, steps


def cold_runs(
    target: DatabaseTarget, engine: Engine, port: int, host: int, vm: int, runs: int
) -> list[float]:
    """Stopped VM → 101, ``runs`` times (plus a first, uncounted, that unpacks the
    image and provisions the user); the VM is left running."""
    cold: list[float] = []
    with Listener(target, ["vm_changed"]) as listener:
        for index in range(runs + 1):
            if index:
                stop_vm(engine, listener, vm, host)
            took, steps = timed_connect(port, vm)
            if index:
                cold.append(took)
                print(f"cold {index}: 101 after {took:.0f} ms ({steps})", flush=True)
            wait_user_state(engine, vm, "disconnected")
    return cold


def vma_of(engine: Engine, vm: int, bridge: str) -> VmaClient:
    """The VMA of the running VM (its address checked to be on the bench's bridge)."""
    with engine.begin() as conn:
        address, vma_port, attempts = conn.execute(
            text("SELECT r.vm_address, r.vm_vma_port, c.run_attempts FROM vm_runtimes r "
                 "JOIN vm_counters c USING (vm_id) WHERE vm_id = :v"), {"v": vm},
        ).one()  # fmt: skip
        secret = derive_vma_secret(master_secret(conn), vm, int(attempts))
    check_route(str(address), bridge)
    return VmaClient(str(address), secret=secret, port=int(vma_port or 3030), timeout=5)


def wait_x_state(vma: VmaClient, states: set[str], timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = vma.x_state()
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.005)


def warm_runs(
    engine: Engine, port: int, vm: int, runs: int, bridge: str
) -> tuple[list[float], list[float]]:
    """Running VM → 101 with its nxagent listening (warm), and with no X session (the
    agent of the run before was stopped through the VMA). Between runs the bench asks
    the VMA itself for the listening session (its ``accept=`` address is the node's
    bridge address, as for the L7R)."""
    vma = vma_of(engine, vm, bridge)
    warm: list[float] = []
    restart: list[float] = []
    for index in range(runs):
        # the agent of the run before listens until it gives up on its client (seconds):
        # stop it rather than wait
        if wait_x_state(vma, {"stopped", "listening"}) == "listening":
            vma.x_stop()
        state = wait_x_state(vma, {"stopped"})
        if state == "stopped":
            took, steps = timed_connect(port, vm)
            restart.append(took)
            print(f"no X {index + 1}: 101 after {took:.0f} ms ({steps})", flush=True)
            wait_user_state(engine, vm, "disconnected")
        vma.x_start({**PARAMS, "qvd.vm.user.name": "u0"})
        state = wait_x_state(vma, {"listening"}, timeout=20)
        if state != "listening":
            raise RuntimeError(f"the X session of VM {vm} is {state}, not listening")
        took, steps = timed_connect(port, vm)
        warm.append(took)
        print(f"warm {index + 1}: 101 after {took:.0f} ms ({steps})", flush=True)
        wait_user_state(engine, vm, "disconnected")
    return warm, restart


def relay_figures(
    pool: multiprocessing.pool.Pool,
    l7r_port: int,
    sink_port: int,
    pump_vm: int,
    cert: Path,
    key: Path,
    size: int,
    repeats: int,
) -> dict[str, dict[str, float]]:
    """Best MiB/s per (relay, direction)."""
    plain, tls = free_port(), free_port()
    best: dict[str, dict[str, float]] = {}
    with (
        socat([f"TCP-LISTEN:{plain},bind=127.0.0.1,reuseaddr,fork",
               f"TCP:127.0.0.1:{sink_port}"]),
        socat([f"OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,cert={cert},key={key},"
               "verify=0", f"TCP:127.0.0.1:{sink_port}"]),
    ):  # fmt: skip
        wait_listening(plain)
        wait_listening(tls)
        for _ in range(repeats):
            for direction in ("down", "up"):
                for via, port in (("l7r", l7r_port), ("socat", plain), ("socat-tls", tls)):
                    job = PumpJob(via, port, direction, size, "pump", pump_vm)
                    seconds = pool.apply(pump, (job,))
                    rate = size / MIB / seconds
                    slot = best.setdefault(via, {})
                    slot[direction] = max(slot.get(direction, 0.0), rate)
    return best


def lists_per_second(
    pool: multiprocessing.pool.Pool, clients: int, port: int, duration: float
) -> tuple[float, list[float]]:
    start_at = time.monotonic() + 0.3
    results = pool.starmap(lists_worker, [(port, "u0", start_at, duration)] * clients, chunksize=1)
    latencies = [x * 1000 for r in results for x in r]
    return len(latencies) / duration, latencies


# ---- main ------------------------------------------------------------------------------------
def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    parser.add_argument("--runs", type=int, default=None, help="cold and warm connects")
    parser.add_argument("--mib", type=int, default=None, help="MiB per relay transfer")
    parser.add_argument("--clients", type=int, default=None, help="concurrent list clients")
    args = parser.parse_args()
    # --quick stays under a minute on a loaded 2-core machine (each client process
    # costs a spawn, each cold run a container stop and start)
    runs = args.runs or (2 if args.quick else 10)
    warm_n = max(runs, 3 if args.quick else 5)
    clients = args.clients or (4 if args.quick else 8)
    size = (args.mib or (32 if args.quick else 256)) * MIB
    repeats = 2 if args.quick else 3
    duration = 3.0 if args.quick else 10.0
    logging.basicConfig(level=logging.WARNING)

    image = ensure_image("test")
    ctx = multiprocessing.get_context("spawn")
    began = time.monotonic()
    sink: multiprocessing.process.BaseProcess | None = None
    pool: multiprocessing.pool.Pool | None = None
    with bench_node("qvd-bench-l7r-") as node:
        try:
            # client and sink processes first, before the HKD's threads exist
            pool = ctx.Pool(max(clients, 1))
            pool.map(ready, range(max(clients, 1)), chunksize=1)
            queue = ctx.Queue()
            sink = ctx.Process(target=sink_server, args=(queue,), daemon=True)
            sink.start()
            sink_port = int(queue.get(timeout=30))

            engine, target = node.db.engine, node.db.target
            host, _ = node.seed(image, 1)
            vm, pump_vm = add_users(engine, "u0")
            l7r_port = node.start_l7r()
            assert node.hkd is not None
            config = node.hkd.config
            check_route(str(node.subnet.network_address + 100), node.bridge)

            phases = [("setup", time.monotonic())]
            cold = cold_runs(target, engine, l7r_port, host, vm, runs)
            phases.append(("cold", time.monotonic()))
            warm, restart = warm_runs(engine, l7r_port, vm, warm_n, node.bridge)
            phases.append(("warm", time.monotonic()))
            with relay_vm(engine, pump_vm, sink_port, node.root):
                rates = relay_figures(
                    pool, l7r_port, sink_port, pump_vm,
                    config.get_path("path.l7r.ssl.cert"), config.get_path("path.l7r.ssl.key"),
                    size, repeats,
                )  # fmt: skip
            phases.append(("relay", time.monotonic()))
            lists, list_ms = lists_per_second(pool, clients, l7r_port, duration)
            phases.append(("lists", time.monotonic()))
            spans = [(name, end - start) for (name, end), (_, start) in
                     zip(phases, [("", began), *phases], strict=False)]  # fmt: skip
            print("time spent: " + ", ".join(f"{name} {secs:.1f} s" for name, secs in spans))

            print(
                f"cold connect, {runs} runs: p50 {statistics.median(cold):.0f} ms, "
                f"p95 {percentile(cold, 0.95):.0f} ms"
            )
            print(
                f"warm reconnect, {warm_n} runs: p50 {statistics.median(warm):.1f} ms, "
                f"p95 {percentile(warm, 0.95):.1f} ms"
            )
            if restart:
                print(
                    f"reconnect, VM running but no X session, {len(restart)} runs: p50 "
                    f"{statistics.median(restart):.1f} ms, p95 {percentile(restart, 0.95):.1f} ms"
                )
            for via, by_dir in rates.items():
                print(
                    f"relay {via:9} ({size // MIB} MiB, best of {repeats}): "
                    f"down {by_dir['down']:.0f} MiB/s, up {by_dir['up']:.0f} MiB/s"
                )
            ratio = {d: rates["l7r"][d] / rates["socat"][d] for d in ("down", "up")}
            tls_ratio = {d: rates["l7r"][d] / rates["socat-tls"][d] for d in ("down", "up")}
            print(
                f"L7R ÷ socat: down {ratio['down']:.2f}, up {ratio['up']:.2f}; "
                f"÷ socat with TLS: down {tls_ratio['down']:.2f}, up {tls_ratio['up']:.2f}"
            )
            print(
                f"logins+lists: {clients} clients for {duration:.0f} s: {lists:.1f}/s, "
                f"latency p50 {statistics.median(list_ms):.0f} ms, "
                f"p95 {percentile(list_ms, 0.95):.0f} ms"
            )
            node.figures = (
                f"cold_p50_ms={statistics.median(cold):.0f} "
                f"cold_p95_ms={percentile(cold, 0.95):.0f} "
                f"warm_p50_ms={statistics.median(warm):.1f} "
                f"warm_p95_ms={percentile(warm, 0.95):.1f} "
                + (f"nox_p50_ms={statistics.median(restart):.1f} " if restart else "")
                + f"relay_ratio={min(ratio.values()):.2f} "
                f"relay_down_ratio={ratio['down']:.2f} relay_up_ratio={ratio['up']:.2f} "
                f"relay_tls_ratio={min(tls_ratio.values()):.2f} "
                f"lists_per_s={lists:.1f}"
            )
        finally:
            cleanup_begins()
            if pool is not None:
                pool.terminate()
                pool.join()
            if sink is not None:
                sink.kill()
                sink.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
