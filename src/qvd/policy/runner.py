"""The policy loop every node runs: try to lead; the leader reconciles once a tick.

A tick reads the enabled policies and the runtime of their tenants' desktops (and,
for a warm pool, the session history), asks ``decide`` what to do, and does it
through ``store.apply``. It is level-triggered: a lost tick, a crash or a change of
leader only delays what the next pass does again (a scheduled occurrence is claimed
in the database, so it never runs twice).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from qvd.config import Config
from qvd.db.errors import DatabaseError
from qvd.db.loadbalancer import Weights
from qvd.db.target import DatabaseTarget
from qvd.policy import store
from qvd.policy.decide import decide
from qvd.policy.leader import Leadership

__all__ = ["PolicyRunner", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PolicyRunner:
    """Runs ``run()`` until ``stop`` is set. ``config`` gives the current configuration
    (the database's rows over the file's); ``clock`` the time the policies see;
    ``may_lead`` says whether this node may lead now (a fenced node may not)."""

    def __init__(
        self,
        engine: Engine,
        target: DatabaseTarget,
        config: Callable[[], Config],
        *,
        stop: threading.Event,
        clock: Callable[[], dt.datetime] = utc_now,
        may_lead: Callable[[], bool] = lambda: True,
    ) -> None:
        self.engine = engine
        self.leadership = Leadership(target)
        self._config = config
        self._stop = stop
        self._clock = clock
        self._may_lead = may_lead
        self.ticks = 0

    def run(self) -> None:
        try:
            delay = 5.0
            while not self._stop.is_set():
                try:
                    self.step()
                    delay = max(0.2, self._config().get_float("policy.tick.delay"))
                except Exception:  # the loop outlives any one pass (it tries again)
                    log.exception("policy: pass failed")
                self._stop.wait(delay)
        finally:
            self.leadership.release()

    def step(self) -> store.ApplyReport | None:
        """One try to lead and, when leading, one tick."""
        if not self._may_lead() or not self._config().get_bool("policy.enable"):
            if self.leadership.leading:
                self.leadership.lose("this node may not lead now")
            return None
        if not self.leadership.try_lead():
            return None
        try:
            return self.tick()
        except store.LeadershipLost as exc:
            self.leadership.lose(str(exc))
        except (DBAPIError, DatabaseError) as exc:
            log.warning("policy: tick failed on the database: %s", exc)
        return None

    def tick(self) -> store.ApplyReport:
        config = self._config()
        now = self._clock()
        pid = self.leadership.backend_pid
        if pid is None:
            raise store.LeadershipLost("not leading")
        with self.engine.connect() as conn:
            policies = store.read_policies(conn)
            vms = store.read_vms(conn, {p.tenant_id for p in policies})
            warm = {
                p.id: store.read_warm(
                    conn, p, now,
                    weeks=config.get_int("policy.warm_pool.weeks"),
                    min_days=config.get_int("policy.warm_pool.min_days"),
                )
                for p in policies
                if p.kind == "warm_pool"
            }  # fmt: skip
        actions = decide(
            policies, vms, now, warm=warm,
            catchup=dt.timedelta(minutes=config.get_int("policy.schedule.catchup.minutes")),
        )  # fmt: skip
        report = store.apply(self.engine, actions, Weights.from_config(config), pid)
        self.ticks += 1
        if actions:
            log.info("policy: tick: %d done, %d skipped", report.done, report.skipped)
        return report
