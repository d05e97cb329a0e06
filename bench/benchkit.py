"""What the benches share: SIGTERM ends a bench through its cleanup; a throwaway
PostgreSQL cluster; a throwaway LXC node (files, bridge, database, HKD) removed at the
end, also on failure or SIGTERM; free ports, percentiles, stopping child processes."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, text

from qvd.config import Config
from qvd.db import (
    DATABASE_URL_ENV,
    DatabaseTarget,
    EmbeddedCluster,
    hash_password,
    make_engine,
    upgrade,
)
from qvd.hkd.backends import load_backend
from qvd.hkd.daemon import Hkd
from qvd.hkd.network import NodeNetwork
from qvd.node.daemons import node_services

__all__ = [
    "BenchDatabase",
    "BenchNode",
    "add_osf",
    "add_vm",
    "api_server",
    "bench_node",
    "cleanup_begins",
    "exit_on_sigterm",
    "free_port",
    "free_subnet",
    "percentile",
    "run_main",
    "scratch_dir",
    "seed_vms",
    "stop_process",
    "throwaway_database",
    "wait_listening",
]


# ---- SIGTERM ----------------------------------------------------------------------------------
_terminated: list[int] = []  # the signal that ended the bench, once one did


def exit_on_sigterm() -> None:
    """SIGTERM (a timeout's kill) ends the bench like Ctrl-C: through its ``finally``,
    which removes the cluster, bridge, route and nftables tables it made. The cleanup
    runs once: a second SIGTERM during it is ignored."""

    def stop(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _terminated.append(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def run_main(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status, or 128 + the signal once SIGTERM ended it: the
    SystemExit it raises may land inside a library (a database driver's wait) that
    turns it into an error of its own, and the status must still say "terminated"."""
    try:
        code = main()
    except BaseException:
        if _terminated:
            sys.exit(128 + _terminated[0])
        raise
    sys.exit(128 + _terminated[0] if _terminated else code)


def cleanup_begins() -> None:
    """From here on (the ``finally`` of a bench) SIGTERM waits: the cleanup runs whole."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ---- small things -----------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 10) -> None:
    """Wait until something accepts connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from exc
            time.sleep(0.02)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, the nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def stop_process(proc: subprocess.Popen[Any], grace: float, *, group: bool = False) -> None:
    """SIGTERM to ``proc`` (to its process group when ``group``), SIGKILL after ``grace``
    seconds; reaped in both cases."""
    if proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


# ---- the database -----------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchDatabase:
    cluster: EmbeddedCluster
    target: DatabaseTarget
    engine: Engine


@contextlib.contextmanager
def throwaway_database(root: Path, *, spread_vm_ids: bool = True) -> Iterator[BenchDatabase]:
    """A PostgreSQL cluster of its own in ``root/pg`` (fsync off) on a free loopback port,
    its database at the newest schema; removed at the end, also on failure or SIGTERM
    (call ``exit_on_sigterm`` first).

    With ``spread_vm_ids``, VM ids start at a random number from 100,000: they name host
    interfaces and cgroups, which are global to the machine, so they keep clear of other
    nodes, tests and benches (which start at 10,000)."""
    cluster = EmbeddedCluster(
        datadir=root / "pg", socket_dir=root / "pgsock", port=free_port(), unsafe_fast=True
    )
    engine: Engine | None = None
    try:
        cluster.initialize()
        cluster.start()
        cluster.ensure_database()
        target = cluster.target()
        engine = make_engine(target)
        upgrade(engine)
        if spread_vm_ids:
            first_id = 100_000 + secrets.randbelow(800_000)
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE vms ALTER COLUMN id RESTART WITH {first_id}"))
        yield BenchDatabase(cluster=cluster, target=target, engine=engine)
    finally:
        cleanup_begins()
        if engine is not None:
            engine.dispose()
        cluster.remove()


def seed_vms(engine: Engine, password: str, vms: int = 10_000, users: int = 1_000) -> int:
    """The API and WAT benches' world: ``vms`` VMs of ``users`` users in tenant 1 (a third
    running and connected on the first node), an OSF ``desk`` with a published DI, two
    running nodes, and a superadmin ``bench`` (role Root) with ``password``. SQL bulk
    inserts, then ANALYZE. Returns the first node's id."""
    pw = hash_password(password)
    with engine.begin() as conn:
        run = conn.execute
        run(text("INSERT INTO administrators (tenant_id, name, password) "
                 "VALUES (0, 'bench', :pw)"), {"pw": pw})  # fmt: skip
        run(text("INSERT INTO role_administrator_relations (role_id, administrator_id) "
                 "SELECT r.id, a.id FROM roles r, administrators a "
                 "WHERE r.name = 'Root' AND a.name = 'bench'"))  # fmt: skip
        run(text("INSERT INTO osfs (tenant_id, name, memory) VALUES (1, 'desk', 256)"))
        run(text("INSERT INTO dis (osf_id, path, version) SELECT id, 'desk.tar', 'v1' FROM osfs"))
        run(text("INSERT INTO di_tags (di_id, tag, fixed) SELECT id, t, t = 'v1' FROM dis, "
                 "unnest(ARRAY['v1', 'head', 'default']) t"))  # fmt: skip
        run(text("UPDATE di_runtimes SET state = 'published'"))
        run(text("INSERT INTO hosts (name, address) "
                 "VALUES ('node1', '10.9.0.1'), ('node2', '10.9.0.2')"))  # fmt: skip
        run(text("UPDATE host_runtimes SET state = 'running', ok_ts = now() + interval '1 day', "
                 "free_ram_mb = 64000, idle_cpu = 0.9, running_vms = 0"))  # fmt: skip
        run(text("INSERT INTO users (tenant_id, login, password) "
                 "SELECT 1, 'user' || g, :pw FROM generate_series(1, :n) g"),
            {"pw": pw, "n": users})  # fmt: skip
        run(text("INSERT INTO vms (name, user_id, osf_id, ip) "
                 "SELECT 'vm-' || g, u.id, o.id, '10.1.' || (g / 250) || '.' || (g % 250 + 1) "
                 "FROM generate_series(1, :n) g "
                 "JOIN users u ON u.login = 'user' || (g % :users + 1) CROSS JOIN osfs o"),
            {"n": vms, "users": users})  # fmt: skip
        run(text("UPDATE vm_runtimes SET vm_state = 'running', user_state = 'connected', "
                 "host_id = (SELECT min(id) FROM hosts) WHERE vm_id % 3 = 0"))  # fmt: skip
        run(text("ANALYZE"))
        host = conn.execute(text("SELECT min(id) FROM hosts")).scalar_one()
    return int(host)


def _serve_api(overrides: dict[str, str], url: str) -> None:
    sys.setswitchinterval(float(os.environ.get("SWI", "0.005")))
    os.environ[DATABASE_URL_ENV] = url
    from qvd.api import serve

    serve(Config().with_overrides(overrides, source="bench"))


@contextlib.contextmanager
def api_server(root: Path, db: BenchDatabase) -> Iterator[int]:
    """The admin API (and so the WAT) over TLS on a free loopback port, in a process of
    its own as ``qvd up`` runs it, on ``db``; its certificate in ``root/cert.pem``.
    Yields the port once it listens; stopped at the end, also on failure or SIGTERM."""
    import multiprocessing

    cluster = db.cluster
    port = free_port()
    overrides = {
        "api.port": str(port), "path.api.ssl.cert": str(root / "cert.pem"),
        "path.api.ssl.key": str(root / "key.pem"), "path.storage.root": str(root / "st"),
    }  # fmt: skip
    url = (f"postgresql:///{cluster.dbname}?host={cluster.socket_dir}&port={cluster.port}"
           f"&user={cluster.role}")  # fmt: skip
    server = multiprocessing.get_context("spawn").Process(target=_serve_api, args=(overrides, url))
    try:
        server.start()
        wait_listening(port, 30)
        yield port
    finally:
        cleanup_begins()
        if server.pid is not None:
            server.terminate()
            server.join(10)


# ---- rows -------------------------------------------------------------------------------------
def add_host(conn: Connection, name: str, address: str) -> int:
    """A node's ``hosts`` row; its id."""
    host = conn.execute(
        text("INSERT INTO hosts (name, address) VALUES (:n, :a) RETURNING id"),
        {"n": name, "a": address},
    ).scalar_one()
    return int(host)


def add_osf(conn: Connection, image: Path, images: Path, name: str, memory: int, n: int) -> int:
    """An OSF (tenant 1) whose published ``default`` DI is ``image``, copied in as
    ``images/<n>-<image name>``."""
    images.mkdir(parents=True, exist_ok=True)
    target = images / f"{n}-{image.name}"
    shutil.copyfile(image, target)
    osf = conn.execute(
        text("INSERT INTO osfs (tenant_id, name, memory) VALUES (1, :n, :m) RETURNING id"),
        {"n": name, "m": memory},
    ).scalar_one()
    di = conn.execute(
        text("INSERT INTO dis (osf_id, path, version) VALUES (:o, :p, 'v1') RETURNING id"),
        {"o": osf, "p": target.name},
    ).scalar_one()
    conn.execute(text("INSERT INTO di_tags (di_id, tag) VALUES (:d, 'default')"), {"d": di})
    conn.execute(text("UPDATE di_runtimes SET state = 'published' WHERE di_id = :d"), {"d": di})
    return int(osf)


def add_vm(conn: Connection, osf: int, login: str, name: str, ip: str) -> int:
    """A user ``login`` (tenant 1, no password) and its VM ``name`` of ``osf`` at ``ip``."""
    user = conn.execute(
        text("INSERT INTO users (tenant_id, login) VALUES (1, :l) RETURNING id"), {"l": login}
    ).scalar_one()
    vm = conn.execute(
        text("INSERT INTO vms (name, user_id, osf_id, ip) VALUES (:n, :u, :o, :ip) RETURNING id"),
        {"n": name, "u": user, "o": osf, "ip": ip},
    ).scalar_one()
    return int(vm)


# ---- the node ---------------------------------------------------------------------------------
def free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.215.0.0/16 that no route on this host touches."""
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


@dataclass
class BenchNode:
    """A bench's node (see ``bench_node``): its files under ``root``, a free /24 and
    bridge name, a database; the HKD once started."""

    root: Path
    subnet: ipaddress.IPv4Network
    bridge: str
    db: BenchDatabase
    hkd: Hkd | None = None
    hypervisor: str = "lxc"
    figures: str = ""
    """The bench's ``name=value`` line: printed by ``bench_node`` after the clean-up
    report, so that it stays the last line of the output."""

    @property
    def host_address(self) -> str:
        return str(self.subnet.network_address + 2)

    @property
    def images(self) -> Path:
        return self.root / "storage/images"

    def config(self, **extra: str) -> Config:
        """The hypervisor (LXC unless the bench says) on the node's bridge, VMs from .100
        of its /24, run and storage under root."""
        values = {
            "nodename": "bench",
            "vm.hypervisor": self.hypervisor,
            "vm.network.bridge": self.bridge,
            "vm.network.ip.start": str(self.subnet.network_address + 100),
            "vm.network.netmask": "24",
            "path.run": str(self.root / "run"),
            "path.storage.root": str(self.root / "storage"),
            **extra,
        }
        return Config().with_overrides(values, source="bench")

    def seed(self, image: Path, count: int, memory: int = 256) -> tuple[int, list[int]]:
        """The node's hosts row, an OSF of ``image`` (``memory`` MB) and ``count`` VMs
        (``vm<n>`` of the users ``u<n>``, from .100). Returns the host id and the VM ids."""
        with self.db.engine.begin() as conn:
            host = add_host(conn, "bench", self.host_address)
            osf = add_osf(conn, image, self.images, "bench", memory, 10000)
            vms = [
                add_vm(conn, osf, f"u{n}", f"vm{n}", str(self.subnet.network_address + 100 + n))
                for n in range(count)
            ]
        return int(host), vms

    def start_hkd(self, **extra: str) -> Hkd:
        """The node's HKD (no hosted services) on ``config(**extra)``, started."""
        self.hkd = Hkd(self.config(**extra), target=self.db.target)
        self.hkd.start()
        return self.hkd

    def start_l7r(self, **extra: str) -> int:
        """The node's HKD with its L7R on a free loopback port, started; says where (the
        line tests/bench/test_benchkit.py reads). Returns the L7R's port."""
        config = self.config(**{
            "l7r.address": "127.0.0.1", "l7r.port": "0",
            "l7r.portal.enable": "0",  # no portal on *:4433 unless the bench asks for one
            **extra,
        })  # fmt: skip
        target = self.db.target
        self.hkd = Hkd(config, target=target, services=node_services(config, target))
        self.hkd.start()
        port = int(getattr(self.hkd.services[0], "port", 0))
        print(
            f"L7R on 127.0.0.1:{port}, VMs on {self.bridge} {self.subnet}, files in {self.root}",
            flush=True,
        )
        return port

    def remove(self) -> None:
        """Remove what the node left: containers or VMs, bridge, firewall, guard route."""
        backend = load_backend(self.hypervisor, config=self.config())
        for vm in backend.list_leftovers():
            with contextlib.suppress(Exception):
                backend.kill(vm)
                backend.cleanup(vm)
        backend.close()
        NodeNetwork(
            bridge=self.bridge,
            host_address=self.host_address,
            network=self.subnet,
            ip_start=self.subnet.network_address + 100,
            vma_port=3030,
            x_port=4100,
        ).remove(guard=True)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A new directory ``/tmp/<prefix>…`` (mode 755: PostgreSQL and the containers read
    it), removed with all it holds at the end, also on failure or SIGTERM."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        root.chmod(0o755)
        yield root
    finally:
        cleanup_begins()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def bench_node(prefix: str, *, hypervisor: str = "lxc") -> Iterator[BenchNode]:
    """A throwaway node in a ``scratch_dir``: a free /24, a bridge name, a database
    (``throwaway_database``); at the end, also on failure or SIGTERM (call
    ``exit_on_sigterm`` first), its HKD halted and everything removed, the time each
    took on stderr. The bench's own ``finally`` (inside the ``with``) runs first."""
    cleaning: float | None = None
    halted: float | None = None
    node: BenchNode | None = None
    try:
        with scratch_dir(prefix) as root, throwaway_database(root) as db:
            bridge = f"qvdb{secrets.token_hex(3)}"
            node = BenchNode(
                root=root, subnet=free_subnet(), bridge=bridge, db=db, hypervisor=hypervisor
            )
            try:
                yield node
            finally:
                cleanup_begins()
                cleaning = time.monotonic()
                try:
                    if node.hkd is not None:
                        node.hkd.halt()
                        if node.hkd.watchdog is not None:  # nothing left to guard
                            node.hkd.watchdog.end()
                finally:
                    halted = time.monotonic()
                    node.remove()
    finally:
        if cleaning is not None and halted is not None:
            print(
                f"cleanup: {halted - cleaning:.1f} s to halt the node, "
                f"{time.monotonic() - halted:.1f} s to remove it",
                file=sys.stderr,
            )
        if node is not None and node.figures:
            sys.stderr.flush()
            print(node.figures, flush=True)
