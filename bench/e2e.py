#!/usr/bin/env python3
"""Benchmark of the end user's path: ``qvd-client`` spawned → first pixel on its screen.

As the peers were measured (DESIGN.md §5): the client runs with DISPLAY on an Xvfb of
its own, started with a black root and no cursor (``-br -nocursor``) and its
framebuffer in a memory-mapped file (``-fbdir``); a separate process polls that file
every 2 ms and stamps the first non-black pixel. No X round trip, nothing drawn by the
measurement itself.

- cold: the VM is stopped; the client's ``connect_to_vm`` has the HKD start its LXC
  container, the VMA start nxagent, and the session draw;
- reconnect: the VM runs and its X session is suspended (the client of the run before
  was ended with SIGTERM);
- both for the ``test`` image (xterm) and the ``desktop`` image (Xfce);
- burst200: 200 distinct users, each with a new TLS connection, ask ``list_of_vm`` at
  once (threads of one separate process); p50 latency and completed logins per second.

The node is real (PostgreSQL, HKD, L7R, bridge, LXC), made in temporary places and
removed at the end, also on failure or SIGTERM, except the unpacked images, kept in
``/var/cache/qvd/bench-e2e-basefs`` for the next run (delete it to reclaim the space).
The L7R runs in this process, so the breakdown comes from wrappers around its steps
(TLS accepted, login, connect-flow states, VMA ``x_start``, the client's NX greeting,
the agent dialled), from the client's nxproxy log and from the desktop's nxagent log
(read in the VM's overlay layer: "agent resumed" is when nxagent says its resume is
done). The client's output goes to ``client<n>/client.log``. Run as root:

    .venv/bin/python bench/e2e.py [--quick] [--runs N]

``--quick`` uses the ``desktop`` image only if it is already built (and says so);
the full run builds it. The last line is ``cold_ms=… reconnect_ms=… cold_xfce_ms=…
reconnect_xfce_ms=… burst200_p50_ms=… logins_per_s=…`` (p50s; targets: cold ≤ 1000,
reconnect ≤ 250, Xfce cold ≤ 1500; logins in arrival order, ≥ 30/s).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import mmap
import multiprocessing
import os
import secrets
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from benchkit import (
    BenchNode,
    add_osf,
    add_vm,
    bench_node,
    cleanup_begins,
    exit_on_sigterm,
    percentile,
    stop_process,
)
from hkd import command
from l7r import stop_vm, wait_user_state
from qvd.db import Listener, hash_password
from qvd.di import cached_image, ensure_image

# unpacked images kept between runs (named by DI id and image file, which carries the
# recipe hash): the Xfce tree takes tens of seconds to unpack and as long to delete
BASEFS_CACHE = Path("/var/cache/qvd/bench-e2e-basefs")
PASSWORD = "bench-password"  # noqa: S105 - users of a throwaway cluster
GEOMETRY = "1024x768"
BURST = 200


# ---- marks: when each step of a connect happened (wall clock, this host) ---------------
class Marks:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[float, str]] = []

    def add(self, label: str) -> None:
        with self._lock:
            self.items.append((time.time(), label))

    def clear(self) -> None:
        with self._lock:
            self.items.clear()

    def first(self, label: str) -> float | None:
        with self._lock:
            return next((t for t, name in self.items if name == label), None)


MARKS = Marks()


def _mark_around(owner: type, name: str, begun: str, done: str) -> None:
    """Wrap the method ``owner.name`` (a blocking one) between the marks ``begun`` and
    ``done``; ``done`` also when it raises."""
    original = getattr(owner, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        MARKS.add(begun)
        try:
            return original(self, *args, **kwargs)
        finally:
            MARKS.add(done)

    setattr(owner, name, wrapper)


def instrument() -> None:
    """Wrap the L7R's steps so that each one leaves a mark (bench only)."""
    from qvd.l7r import endpoints as l7r_service
    from qvd.l7r import relay, states
    from qvd.l7r import server as l7r_server
    from qvd.vma.client import VmaClient

    handle = l7r_server.L7rServer._handle

    async def _handle(self: Any, reader: Any, writer: Any) -> None:
        MARKS.add("tls accepted")
        await handle(self, reader, writer)

    l7r_server.L7rServer._handle = _handle  # type: ignore[method-assign]

    _mark_around(l7r_service.Node, "login", "login begun", "login done")

    move = states.Handshake.move

    def _move(self: Any, to: Any) -> str:
        MARKS.add(f"state {getattr(to, 'name', to)}")
        return move(self, to)

    states.Handshake.move = _move  # type: ignore[method-assign]

    _mark_around(VmaClient, "x_start", "x_start called", "x_start answered")

    # the server calls the relay's two steps by the names it imported
    first_bytes = relay.first_bytes
    open_agent = relay.open_agent

    async def _first_bytes(*args: Any, **kwargs: Any) -> bytes:
        MARKS.add("101 sent")
        data = await first_bytes(*args, **kwargs)
        MARKS.add("nx greeting from client")
        return data

    async def _open_agent(*args: Any, **kwargs: Any) -> Any:
        result = await open_agent(*args, **kwargs)
        MARKS.add("agent dialled")
        return result

    l7r_server.first_bytes = _first_bytes  # type: ignore[attr-defined]
    l7r_server.open_agent = _open_agent  # type: ignore[attr-defined]


# ---- the client's screen ------------------------------------------------------------------
class Screen:
    """An Xvfb with a black root, no cursor and its framebuffer in a file."""

    def __init__(self, root: Path) -> None:
        self.fbdir = root / "fb"
        self.fbdir.mkdir()
        for _ in range(100):
            number = 300 + secrets.randbelow(600)
            if not Path(f"/tmp/.X{number}-lock").exists():  # noqa: S108 - X lock files
                break
        self.display = f":{number}"
        self.proc = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", f"{GEOMETRY}x24", "-nolisten", "tcp",
             "-noreset", "-br", "-nocursor", "-fbdir", str(self.fbdir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():  # noqa: S108
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb {self.display} did not start")
            time.sleep(0.02)
        self.file = self.fbdir / "Xvfb_screen0"

    def close(self) -> None:
        stop_process(self.proc, 5)


def pixels(mm: mmap.mmap) -> tuple[int, int]:
    """(offset, length) of the pixel data of an XWD file."""
    fields = struct.unpack(">25I", mm[:100])
    header, height, bytes_per_line, ncolors = fields[0], fields[5], fields[12], fields[19]
    return header + 12 * ncolors, bytes_per_line * height


# lines of the client's nxproxy log and of the desktop's nxagent log stamped as marks
PROXY_LINES = {
    "Info: Connection with remote proxy completed": "nx proxy link up",
    "Session: Session started": "nx session started",
}
AGENT_LINES = {
    "Session: Resuming session": "agent resuming",
    "Info: Waiting for connection": "agent waiting",
    "Session: Session resumed": "agent resumed",
    "Session: Session started": "agent started",
}


class LogTail:
    """New lines of a log file that may not exist yet, from ``start`` on."""

    def __init__(self, path: str, lines: dict[str, str], start: int) -> None:
        self.path, self.lines, self.read = path, lines, start
        self.seen: dict[str, float] = {}

    def poll(self) -> None:
        with contextlib.suppress(OSError), open(self.path, "rb") as log:
            log.seek(self.read)
            new = log.read()
            self.read += len(new)
            now = time.time()
            for line, name in self.lines.items():
                if name not in self.seen and line.encode() in new:
                    self.seen[name] = now


def log_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def watch(fbfile: str, tails: list[LogTail], timeout: float, out: Any) -> None:
    """(Separate process.) Stamp the first non-black pixel and the logs' steps."""
    with open(fbfile, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        offset, length = pixels(mm)
        black = bytes(length)
        if mm[offset : offset + length] != black:
            out.send(("error", "the screen is not black before the client starts"))
            return
        out.send(("ready", 0.0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if mm[offset : offset + length] != black:
                now = time.time()
                for tail in tails:
                    tail.poll()
                    for name, when in tail.seen.items():
                        out.send((name, when))
                out.send(("first pixel", now))
                return
            for tail in tails:
                tail.poll()
            time.sleep(0.002)
        out.send(("error", f"no pixel within {timeout} s"))


def wait_black(screen: Screen, timeout: float = 15) -> None:
    with open(screen.file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        offset, length = pixels(mm)
        black = bytes(length)
        deadline = time.monotonic() + timeout
        while mm[offset : offset + length] != black:
            if time.monotonic() > deadline:
                raise RuntimeError("the client's window did not go away")
            time.sleep(0.02)


@dataclass
class Client:
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.proc, 10, group=True)


@dataclass
class Desk:
    label: str
    vm: int
    login: str
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def agent_log(self, storage: Path) -> Path:
        """nxagent's log in the VM's overlay layer (as the VMA writes it)."""
        layers = sorted((storage / "overlayfs").glob(f"*-{self.vm}-overlayfs"))
        base = layers[0] if layers else storage / "overlayfs" / f"none-{self.vm}"
        return base / "upper/var/log/qvd/nxagent.log"


@dataclass
class Bench:
    port: int
    screen: Screen
    root: Path
    password_file: Path
    storage: Path
    clients: list[Client] = field(default_factory=list)
    count: int = 0

    def first_pixel(self, desk: Desk) -> tuple[dict[str, float], Client]:
        """Spawn the client for ``desk``; the marks of the run, in ms from the spawn."""
        self.count += 1
        home = self.root / f"client{self.count}"
        home.mkdir()
        nxroot = home / "nx"
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe()
        agent_log = str(desk.agent_log(self.storage))
        tails = [
            LogTail(str(nxroot / "nxproxy.log"), PROXY_LINES, 0),
            LogTail(agent_log, AGENT_LINES, log_size(agent_log)),
        ]
        watcher = ctx.Process(target=watch, args=(str(self.screen.file), tails, 60, theirs))
        watcher.start()
        try:
            kind, detail = mine.recv()
            if kind != "ready":
                raise RuntimeError(str(detail))
            MARKS.clear()
            env = {**os.environ, "DISPLAY": self.screen.display, "HOME": str(home),
                   "XDG_CONFIG_HOME": str(home / ".config"), "NX_ROOT": str(nxroot),
                   "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # fmt: skip
            output = open(home / "client.log", "wb")  # noqa: SIM115 - the child's
            t0 = time.time()
            proc = subprocess.Popen(
                [sys.executable, "-m", "qvd.client.main", "--host", "127.0.0.1",
                 "--port", str(self.port), "--user", desk.login, "--password-file",
                 str(self.password_file), "--vm", str(desk.vm), "--insecure", "--link", "lan",
                 "--geometry", GEOMETRY],
                stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                env=env, start_new_session=True,
            )  # fmt: skip
            output.close()
            client = Client(proc)
            self.clients.append(client)
            stamps: dict[str, float] = {}
            while True:
                if not mine.poll(90):
                    raise RuntimeError("the screen watcher went silent")
                kind, when = mine.recv()
                if kind == "error":
                    said = (home / "client.log").read_text(errors="replace")[-600:]
                    raise RuntimeError(f"{desk.label}: {when} (client rc {proc.poll()}: {said})")
                stamps[kind] = (when - t0) * 1000
                if kind == "first pixel":
                    break
        finally:
            watcher.join(5)
            if watcher.is_alive():
                watcher.kill()
        for when, label in MARKS.items:
            stamps.setdefault(label, (when - t0) * 1000)
        return stamps, client


STEPS: list[tuple[str, str, str]] = [
    # (name, from mark, to mark): the breakdown printed for each kind of run
    ("client start + TLS", "spawn", "tls accepted"),
    ("auth (argon2)", "login begun", "login done"),
    ("take session", "login done", "state ACQUIRED"),
    ("VM start (HKD)", "state ACQUIRED", "x_start called"),
    ("VMA x_start", "x_start called", "x_start answered"),
    ("nxagent listening", "x_start answered", "state RELAYING"),
    ("101 → client NX greeting", "101 sent", "nx greeting from client"),
    ("dial nxagent", "nx greeting from client", "agent dialled"),
    ("NX handshake", "agent dialled", "nx proxy link up"),
    ("agent resume (link → resumed)", "nx proxy link up", "agent resumed"),
    ("paint after resume", "agent resumed", "first pixel"),
    ("first paint", "nx proxy link up", "first pixel"),
]


def breakdown(runs: list[dict[str, float]]) -> str:
    lines = []
    for name, start, end in STEPS:
        spans = [
            r[end] - (0.0 if start == "spawn" else r[start])
            for r in runs
            if end in r and (start == "spawn" or start in r)
        ]
        if spans:
            lines.append(f"    {name:<26} {statistics.median(spans):7.0f} ms")
    total = [r["first pixel"] for r in runs]
    lines.append(f"    {'spawn → first pixel':<26} {statistics.median(total):7.0f} ms")
    return "\n".join(lines)


def measure(bench: Bench, engine: Engine, target: Any, desk: Desk, host: int, runs: int) -> None:
    """``runs`` times (cold, then reconnects), the VM stopped after each cold run's series."""
    with Listener(target, ["vm_changed"]) as notes:
        for _ in range(runs):
            stamps, client = bench.first_pixel(desk)
            desk.runs.setdefault("cold", []).append(stamps)
            for _ in range(max(runs, 2)):
                wait_user_state(engine, desk.vm, "connected", 30)
                client.stop()
                wait_user_state(engine, desk.vm, "disconnected", 30)
                wait_black(bench.screen)
                stamps, client = bench.first_pixel(desk)
                desk.runs.setdefault("reconnect", []).append(stamps)
            wait_user_state(engine, desk.vm, "connected", 30)
            client.stop()
            wait_user_state(engine, desk.vm, "disconnected", 30)
            wait_black(bench.screen)
            stop_vm(engine, notes, desk.vm, host)


# ---- the login burst ----------------------------------------------------------------------
def burst_worker(port: int, logins: list[str], out: Any) -> None:
    """(Separate process.) One thread per user: TLS, Basic auth, ``list_of_vm``."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    go = threading.Event()
    done: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(login: str) -> None:
        basic = base64.b64encode(f"{login}:{PASSWORD}".encode()).decode()
        request = (
            f"GET /qvd/list_of_vm HTTP/1.1\r\nHost: l7r\r\nAuthorization: Basic {basic}\r\n\r\n"
        ).encode()
        go.wait()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=120) as raw,
                ctx.wrap_socket(raw) as tls,
            ):
                tls.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    head += chunk
            ok = head.startswith(b"HTTP/1.1 200 ")
        except OSError as exc:
            ok, head = False, str(exc).encode()
        with lock:
            if ok:
                done.append(time.monotonic())
            else:
                errors.append(head[:80].decode(errors="replace"))

    threads = [threading.Thread(target=one, args=(login,)) for login in logins]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    start = time.monotonic()
    go.set()
    for thread in threads:
        thread.join()
    out.send(([t - start for t in done], errors))


def burst(port: int, logins: list[str]) -> tuple[list[float], list[str]]:
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=burst_worker, args=(port, logins, theirs))
    proc.start()
    try:
        if not mine.poll(300):
            raise RuntimeError("the login burst did not finish within 300 s")
        result: tuple[list[float], list[str]] = mine.recv()
        return result
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


# ---- the node -----------------------------------------------------------------------------
def add_desk(node: BenchNode, image: Path, label: str) -> tuple[int, str]:
    """A second OSF, disk image, user and VM (the Xfce desktop)."""
    login = f"{label}user"
    with node.db.engine.begin() as conn:
        osf = add_osf(conn, image, node.images, label, 512, 10001)
        vm = add_vm(conn, osf, login, label, str(node.subnet.network_address + 150))
    return vm, login


def warm_up(engine: Engine, target: Any, vm: int, host: int) -> None:
    """Start and stop the VM once: the HKD unpacks the image's base outside the figures."""
    with Listener(target, ["vm_changed"]) as notes:
        command(engine, [vm], "start", host)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                state = conn.execute(
                    text("SELECT vm_state FROM vm_runtimes WHERE vm_id = :v"), {"v": vm}
                ).scalar()
            if state == "running":
                break
            notes.wait(0.2)
        else:
            raise RuntimeError(f"VM {vm} did not start for the warm-up")
        stop_vm(engine, notes, vm, host)


def median_of(desk: Desk | None, kind: str) -> str:
    if desk is None or not desk.runs.get(kind):
        return "skipped"
    return f"{statistics.median(r['first pixel'] for r in desk.runs[kind]):.0f}"


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    parser.add_argument("--runs", type=int, default=None, help="cold runs per image")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    began = time.monotonic()
    logging.basicConfig(level=logging.WARNING)

    test_image = ensure_image("test")
    xfce = not args.quick or cached_image("desktop") is not None
    desktop_image = ensure_image("desktop") if xfce else None
    if not xfce:
        print("--quick: the desktop (Xfce) image is not built; its figures are skipped")
    bench: Bench | None = None
    screen: Screen | None = None
    with bench_node("qvd-bench-e2e-") as node:
        try:
            engine, target = node.db.engine, node.db.target
            host, (test_vm,) = node.seed(test_image, 1)
            desks = [Desk("test", test_vm, "u0")]
            if desktop_image is not None:
                vm, login = add_desk(node, desktop_image, "xfce")
                desks.append(Desk("xfce", vm, login))
            hashed = hash_password(PASSWORD)
            logins = [f"storm{i:03d}" for i in range(BURST)]
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET password = :p"), {"p": hashed})
                conn.execute(
                    text("INSERT INTO users (tenant_id, login, password) VALUES (1, :l, :p)"),
                    [{"l": login, "p": hashed} for login in logins],
                )
            BASEFS_CACHE.mkdir(parents=True, exist_ok=True)
            instrument()
            port = node.start_l7r(**{"path.storage.basefs": str(BASEFS_CACHE)})
            password_file = node.root / "password"
            password_file.write_text(PASSWORD + "\n")
            screen = Screen(node.root)
            bench = Bench(
                port=port,
                screen=screen,
                root=node.root,
                password_file=password_file,
                storage=node.root / "storage",
            )
            for desk in desks:
                warm_up(engine, target, desk.vm, host)
                measure(bench, engine, target, desk, host, runs)
                for kind in ("cold", "reconnect"):
                    taken = desk.runs[kind]
                    print(f"{desk.label} {kind}, {len(taken)} runs: p50 spawn → first pixel "
                          f"{statistics.median(r['first pixel'] for r in taken):.0f} ms, max "
                          f"{max(r['first pixel'] for r in taken):.0f} ms")  # fmt: skip
                    print(breakdown(taken))
            latencies, errors = burst(port, logins)
            if errors:
                print(f"burst: {len(errors)} failed, e.g. {errors[0]!r}")
            burst_p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
            rate = len(latencies) / max(latencies) if latencies else 0.0
            print(
                f"burst of {BURST} distinct users (TLS + argon2 + list_of_vm): p50 "
                f"{burst_p50:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms, max "
                f"{max(latencies) * 1000:.0f} ms, {rate:.1f} logins/s"
            )
            print(f"bench time (image builds excluded): {time.monotonic() - began:.1f} s")
            xfce_desk = desks[1] if len(desks) > 1 else None
            node.figures = (
                f"cold_ms={median_of(desks[0], 'cold')} "
                f"reconnect_ms={median_of(desks[0], 'reconnect')} "
                f"cold_xfce_ms={median_of(xfce_desk, 'cold')} "
                f"reconnect_xfce_ms={median_of(xfce_desk, 'reconnect')} "
                f"burst200_p50_ms={burst_p50:.0f} logins_per_s={rate:.1f}"
            )
        finally:
            cleanup_begins()
            if bench is not None:
                for client in bench.clients:
                    client.stop()
            if screen is not None:
                screen.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
