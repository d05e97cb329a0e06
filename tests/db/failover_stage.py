"""A node and the API on a replicated database, for failover tests and bench/failover.py.

:func:`failover_stage` starts two clusters in streaming replication
(``tests.pgcluster``), a world of tenants, users and VMs on them, a real HKD (the
fake backend in-process: what is tested is its database side) and the real API
(uvicorn over TLS), both given the two-host target; :class:`Stage` drives them
through the API as an admin would and reads the backend and the database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

from qvd.api import api_endpoint
from qvd.db import make_engine
from qvd.hkd.backends.fake import FakeBackend
from qvd.hkd.daemon import Hkd
from qvd.hkd.lease import boot_clock
from tests.api.conftest import PASSWORD, World, build_world, running_api
from tests.conftest import scratch_dir
from tests.hkd.conftest import FakeVma, hkd_config
from tests.pgcluster import ReplicatedPair, replicated_pair

__all__ = ["Stage", "fail_over_and_time", "failover_stage", "wait_for"]

# the node's fence clock must outlast the failover (docs/ha-postgresql.md): fence 8 s,
# lost 11 s; commands are found through LISTEN (and its resync), the slow poll is 60 s
HKD_TIMINGS = {
    "internal.hkd.agent.ticker.timeout": "8",
    "internal.hkd.fence.kill_time": "0.3",
    "internal.hkd.cluster.node.timeout": "11",
    "internal.hkd.poll.delay": "60",
    "internal.hkd.agent.ticker.delay": "0.2",
    "internal.hkd.vmhandler.vma.silent.max_time.on.running": "30",
    "internal.hkd.vmhandler.vma.failed.max_time.on.running": "30",
}


def wait_for(check: Callable[[], bool], timeout: float = 60.0, step: float = 0.02) -> float:
    """Until ``check()`` holds; the seconds it took (an AssertionError after
    ``timeout``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


@dataclass
class Stage:
    pair: ReplicatedPair
    engine: Engine  # the tests' own view of the database (same two-host target)
    world: World
    hkd: Hkd
    backend: FakeBackend
    vma: FakeVma
    api: httpx.Client
    sid: str

    def act(self, action: str, **body: Any) -> dict[str, Any]:
        """One API action as root; the JSON answer (any HTTP status is a failure)."""
        response = self.api.post("/api", json={"action": action, "sid": self.sid, **body})
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def vm_state(self, vm_id: int) -> str | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    text("SELECT vm_state FROM vm_runtimes WHERE vm_id = :v"), {"v": vm_id}
                ).scalar_one()
        except Exception:  # the database is failing over: not yet
            return None
        return str(row)

    def calls(self, operation: str, vm_id: int) -> int:
        """How often the backend was asked to ``operation`` the VM."""
        return sum(1 for call in list(self.backend.calls) if call == (operation, vm_id))

    def heartbeat_after(self, moment: float) -> bool:
        """Whether the HKD proved a heartbeat sent after ``moment`` (boot clock)."""
        return self.hkd.fence_clock.deadline - self.hkd.settings.ticker_timeout > moment

    def writes_again(self) -> bool:
        """Whether a write through the tests' engine works (a primary answers)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(text("UPDATE tenants SET name = name WHERE id = 0"))
        except Exception:
            return False
        return True

    def api_answers(self) -> bool:
        """Whether an API action that reads the database answers with status 0."""
        try:
            return self.act("vm_get_list")["status"] == 0
        except httpx.HTTPError:
            return False


@contextlib.contextmanager
def failover_stage() -> Iterator[Stage]:
    """Everything started; everything stopped and removed on every exit path."""
    run_dir = scratch_dir(f"qvd-ha-run-{os.getpid()}-")
    api_dir = Path(tempfile.mkdtemp(prefix=f"qvd-ha-api-{os.getpid()}-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        stack.callback(shutil.rmtree, api_dir, ignore_errors=True)
        pair = stack.enter_context(replicated_pair(f"qvd-ha-pg-{os.getpid()}-"))
        target = pair.target()
        engine = make_engine(target)
        stack.callback(engine.dispose)
        world = build_world(engine)
        vma = FakeVma()
        with engine.connect() as conn:
            vma.alive.update(str(ip) for ip in conn.execute(text("SELECT ip FROM vms")).scalars())
        backend = FakeBackend()
        hkd = Hkd(hkd_config(run_dir, **HKD_TIMINGS), backend=backend, vma=vma, target=target)
        hkd.start()
        stack.callback(lambda: hkd.wait(0) or hkd.halt())
        api_engine = make_engine(target, pool_size=5, max_overflow=5)
        stack.callback(api_engine.dispose)
        running = stack.enter_context(running_api(api_dir, api_engine))
        endpoint = api_endpoint(running.config)
        context = ssl.create_default_context(cafile=str(endpoint.cert))
        client = stack.enter_context(
            httpx.Client(verify=context, base_url=endpoint.url, timeout=60)
        )
        login = {"action": "current_admin_setup", "login": "root", "password": PASSWORD}
        answer = client.post("/api", json={**login, "tenant": "*"}).json()
        assert answer["status"] == 0, answer
        yield Stage(pair, engine, world, hkd, backend, vma, client, str(answer["sid"]))


def fail_over_and_time(stage: Stage, timeout: float = 60.0) -> dict[str, float]:
    """Crash the primary, promote the standby; seconds from the crash until the HKD has
    proved a heartbeat on the new primary (``hkd_back_s``), until the API answers an
    action (``api_back_s``), and until both (``failover_s``)."""
    crashed_at = boot_clock()
    start = time.monotonic()
    stage.pair.fail_over("immediate")
    back: dict[str, float] = {"promote_s": time.monotonic() - start}
    while len(back) < 3:
        if "hkd_back_s" not in back and stage.heartbeat_after(crashed_at):
            back["hkd_back_s"] = time.monotonic() - start
        if "api_back_s" not in back and stage.api_answers():
            back["api_back_s"] = time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"the daemons were not back within {timeout} s: {back}")
        time.sleep(0.02)
    back["failover_s"] = max(back["hkd_back_s"], back["api_back_s"])
    return back
