"""A connect in flight and the pieces around it, for tests/db/test_failover_connect.py
and bench/failover_connect.py: the real L7R (over TLS) on a given database target, a
real VMA server (the L7R tests' agent), a stand-in for the node's HKD that claims a
start command and runs the VM once ``allowed``, a trigger that counts the start
requests (replicated with the rows), a hook on the L7R's retry log, a client's
``connect_to_vm`` kept open after its 101.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text

from qvd.db import DatabaseTarget
from qvd.l7r import L7rServer
from qvd.vma.server import make_server
from tests.l7r.conftest import (
    PASSWORD,
    FakeAgent,
    Lab,
    NxAgentStandIn,
    l7r_config,
    seed,
    vma_secret_store,
)
from tests.l7r.ldap_fixture import basic
from tests.l7r.test_server import final_response
from tests.l7r.test_wire import GREETING

__all__ = [
    "WAIT", "Connect", "Desk", "NodeStandIn", "RetrySeen", "completed", "connecting", "desk",
    "wait_for", "watching_retries",
]  # fmt: skip

WAIT = 60.0  # generous: a bound on a wait for an event, never a measure


# ---- the stage ---------------------------------------------------------------------------
COUNT_START_REQUESTS = [
    "CREATE TABLE test_start_requests (vm_id integer NOT NULL)",
    """CREATE FUNCTION test_count_start() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.vm_cmd = 'start' AND OLD.vm_cmd IS DISTINCT FROM 'start' THEN
           INSERT INTO test_start_requests (vm_id) VALUES (NEW.vm_id);
         END IF;
         RETURN NEW;
       END $$""",
    "CREATE TRIGGER test_count_start AFTER UPDATE ON vm_runtimes "
    "FOR EACH ROW EXECUTE FUNCTION test_count_start()",
]


class RetrySeen(logging.Handler):
    """Sets ``seen`` once the L7R logs a retry of the step named ``what`` (the
    deterministic hook: the step met the dead primary)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.what = "\0"
        self.seen = threading.Event()

    def expect(self, what: str) -> None:
        self.what = what
        self.seen.clear()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.what in message and "retrying" in message:
            self.seen.set()


@contextlib.contextmanager
def watching_retries() -> Iterator[RetrySeen]:
    handler = RetrySeen()
    loggers = [logging.getLogger(n) for n in ("qvd.db.failover", "qvd.l7r.dbsteps")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@dataclass
class NodeStandIn:
    """Claims the VM's start command (as the HKD's claim: only from ``stopped`` with the
    command pending) and runs it at the lab's VMA, once ``allowed``; failures while the
    database fails over are retried on the next pass."""

    lab: Lab
    engine: Engine
    allowed: threading.Event = field(default_factory=threading.Event)
    claims: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.02):
            if not self.allowed.is_set():
                continue
            try:
                with self.engine.begin() as conn:
                    claimed = conn.execute(
                        text(
                            "UPDATE vm_runtimes SET vm_cmd = NULL, vm_state = 'starting', "
                            "       vm_state_ts = now() "
                            " WHERE vm_id = :v AND vm_cmd = 'start' AND vm_state = 'stopped' "
                            "RETURNING vm_id"
                        ),
                        {"v": self.lab.seed.vm_id},
                    ).first()
                if claimed is not None:
                    self.claims += 1
                    self.lab.run_vm(self.lab.seed.vm_id)
            except Exception as exc:  # the database is failing over: the next pass
                logging.getLogger(__name__).info("node stand-in: %s", exc)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Desk:
    lab: Lab
    node: NodeStandIn
    host_name: str = "node1"

    def scalar(self, sql: str) -> object:
        with self.lab.engine.connect() as conn:
            return conn.execute(text(sql), {"v": self.lab.seed.vm_id}).scalar()

    def start_requests(self) -> int:
        return int(str(self.scalar("SELECT count(*) FROM test_start_requests WHERE vm_id = :v")))

    def vm_cmd(self) -> object:
        try:
            return self.scalar("SELECT vm_cmd FROM vm_runtimes WHERE vm_id = :v")
        except Exception:
            return None

    def session(self) -> tuple[str, int | None]:
        with self.lab.engine.connect() as conn:
            state, holder = conn.execute(
                text("SELECT user_state, l7r_host_id FROM vm_runtimes WHERE vm_id = :v"),
                {"v": self.lab.seed.vm_id},
            ).one()
        return str(state), holder

    def history(self) -> list[tuple[str, str, object, object]]:
        with self.lab.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT kind, result, ended_at, end_reason FROM session_history "
                    " WHERE vm_id = :v AND kind IN ('connect', 'takeover') ORDER BY id"
                ),
                {"v": self.lab.seed.vm_id},
            ).all()
        return [(str(r[0]), str(r[1]), r[2], r[3]) for r in rows]


@contextlib.contextmanager
def desk(target: DatabaseTarget, engine: Engine, run: Path, **extra: str) -> Iterator[Desk]:
    """A seeded database, the VMA, the L7R on ``target``, the node stand-in on the
    tests' own ``engine``; all stopped on every exit path."""
    seeded = seed(engine)
    with engine.begin() as conn:
        for sql in COUNT_START_REQUESTS:
            conn.execute(text(sql))
    with contextlib.ExitStack() as stack:
        nx = NxAgentStandIn()
        stack.callback(nx.close)
        agent = FakeAgent(port=nx.port)
        secrets = vma_secret_store(engine, seeded.vm_id, run / "vma.secret")
        vma = make_server("127.0.0.1", 0, agent, secrets)
        threading.Thread(target=vma.serve_forever, daemon=True).start()
        stack.callback(vma.server_close)
        stack.callback(vma.shutdown)
        config = l7r_config(run / "run", **{"internal.l7r.timeout.vm_start": "60", **extra})
        server = L7rServer(config, target, seeded.host_id, "127.0.0.1")
        server.start()
        stack.callback(server.stop)
        lab = Lab(server=server, seed=seeded, engine=engine, agent=agent, nx=nx)
        lab.vma_port = int(vma.server_address[1])
        node = NodeStandIn(lab, engine)
        thread = threading.Thread(target=node.run, name="node-stand-in", daemon=True)
        thread.start()
        stack.callback(thread.join, 10)
        stack.callback(node.stop)
        yield Desk(lab, node)


@dataclass
class Connect:
    """A client's ``connect_to_vm`` in flight (its socket kept open after the 101)."""

    sock: ssl.SSLSocket
    answer: Future[tuple[bytes, bytes, list[bytes]]]


@contextlib.contextmanager
def connecting(lab: Lab, pool: ThreadPoolExecutor) -> Iterator[Connect]:
    sock = lab.connect()
    sock.settimeout(WAIT + 30)
    request = (
        f"GET /qvd/connect_to_vm?id={lab.seed.vm_id} HTTP/1.1\r\n"
        f"Authorization: {basic('alice', PASSWORD)}\r\n"
        "Connection: Upgrade\r\nUpgrade: QVD/1.0\r\n\r\n"
    ).encode()
    sock.sendall(request)
    try:
        yield Connect(sock, pool.submit(final_response, sock, bytearray()))
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def wait_for(check: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def completed(desk_: Desk, connect: Connect) -> None:
    """The connect got its 101 and relays; the VM was asked to start once; the session
    row is the connect's, released once the client leaves; the history says ok."""
    head, _, _ = connect.answer.result(WAIT)
    assert head.startswith(b"HTTP/1.1 101"), head
    connect.sock.sendall(GREETING + b"ECHO ping\n")  # the relay carries bytes both ways
    echoed = b""
    while b"ECHO ping" not in echoed:
        data = connect.sock.recv(65536)
        assert data, f"the relay closed: {echoed!r}"
        echoed += data
    assert desk_.start_requests() == 1, "the VM was asked to start more than once"
    assert desk_.node.claims == 1
    state, holder = desk_.session()
    assert (state, holder) == ("connected", desk_.lab.seed.host_id)
    connect.sock.close()
    wait_for(lambda: desk_.session() == ("disconnected", None), "the session released")
    wait_for(lambda: any(h[2] is not None for h in desk_.history()), "the history row closed")
    rows = desk_.history()
    assert [(kind, result) for kind, result, _, _ in rows] == [("connect", "ok")], rows
    assert rows[0][3] == "disconnect", rows
