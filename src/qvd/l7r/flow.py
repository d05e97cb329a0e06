"""The connect flow's I/O: drives the pure machine of ``connect.py`` (blocking).

``ConnectFlow.connect`` feeds the machine what it did and saw, and does what the
machine asks: the database through ``store`` and the rules of ``qvd.db.vmrules``,
waits through the ``Notifier`` (woken by NOTIFY, polling every ``POLL`` s as the
fallback for a lost one) or on the client's departure, the VMA through ``VmaClient``
(``x_start``, then the blocking ``x_wait`` until the X session listens). Progress texts
go to ``progress`` (102s, or the portal's WebSocket frames); failures raise the
machine's ``L7rError`` whose message is the real reason, after the session is released.

Also here, for the L7R's ``stop_vm`` and the portal's buttons: ``stop_vm``,
``start_vm``, ``restart_vm`` (by the same rules), and ``spy_endpoint`` (how to reach a
running VM's VMA, for an administrator's view of it).
"""

from __future__ import annotations

import logging
import os
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from qvd.config import Config
from qvd.db import LiveConfig, vmrules
from qvd.db.loadbalancer import NoHostAvailable, Weights
from qvd.db.vmasecret import derive_vma_secret, master_secret
from qvd.l7r import connect as m
from qvd.l7r import store
from qvd.l7r.auth import Principal, issue_token, store_auth_params
from qvd.l7r.connect import Aborted, Transport
from qvd.l7r.dbsteps import db_step, failover_wait, retry_lost
from qvd.l7r.errors import Forbidden, NotFound, Unavailable
from qvd.l7r.notify import Notifier
from qvd.vma.client import DEFAULT_PORT, VmaAuthError, VmaClient, VmaError, VmaHttpError

__all__ = ["POLL", "Aborted", "ConnectFlow", "Progress", "Target", "VmaEndpoint"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[str], None]
POLL = 1.0  # seconds a wait lasts without a notification (the lost-NOTIFY fallback)
X_LEAVE = ("provisioning", "starting")  # the X states x_wait waits out
DEFAULT_X_PORT = 4100
_KEY_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True, kw_only=True)
class VmaEndpoint:
    """How to reach a running VM's VMA: address, port and the secret of this run (kept
    out of ``repr``, so out of logs)."""

    address: str
    port: int
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where the relay goes once the X session listens."""

    vm_id: int
    address: str
    port: int
    cookie: str = field(repr=False)
    slave_key: str = field(repr=False)
    vma: VmaEndpoint
    took_over: bool = False  # the session was taken from another connection (history)


class ConnectFlow:
    def __init__(
        self,
        engine: Engine,
        live_config: LiveConfig,
        *,
        host_id: int,
        host_address: str,
        notifier: Notifier,
        holds_session: Callable[[int], bool] = lambda vm_id: False,
    ) -> None:
        self._engine = engine
        self._live_config = live_config
        self._host_id = host_id
        self._host_address = host_address
        self._notifier = notifier
        self._holds_session = holds_session
        # Sessions this process is taking or took and whose connect has not ended: until
        # the caller's ``on_acquired`` has registered one, another connect to the same VM
        # on this node must not take it for a session left by a crash of this L7R
        self._taking_lock = threading.Lock()
        self._taking: Counter[int] = Counter()

    def _held_here(self, vm_id: int) -> bool:
        with self._taking_lock:
            taking = self._taking[vm_id] > 0
        return taking or self._holds_session(vm_id)

    def _mark_taking(self, vm_id: int, delta: int) -> None:
        with self._taking_lock:
            self._taking[vm_id] += delta
            if self._taking[vm_id] <= 0:
                del self._taking[vm_id]

    @property
    def _config(self) -> Config:
        """The file configuration with the database's rows over it (re-read on the new
        primary when a failover cut the read)."""
        return retry_lost(self._live_config.get, wait=self._wait, what="reading the config")

    @property
    def _wait(self) -> float:
        """Seconds a connect's database step waits for a primary (a failover)."""
        return failover_wait(self._live_config.file_config)

    def step(
        self,
        work: Callable[[Connection], T],
        what: str,
        after_unknown: Callable[[Connection], T] | None = None,
    ) -> T:
        """One database step of a connect under the retry rule (``dbsteps.db_step``)."""
        return db_step(self._engine, work, wait=self._wait, what=what, after_unknown=after_unknown)

    # ---- checks before anything is written -------------------------------------------
    def check_vm(self, principal: Principal, vm_id: int) -> store.VmRow:
        if principal.token_vm_id is not None and principal.token_vm_id != vm_id:
            raise Forbidden("vm_id does not match with provided token")
        vm = self.step(lambda conn: store.vm_row(conn, vm_id), f"VM {vm_id}: reading it")
        if vm is None or vm.user_id != principal.user_id:
            raise NotFound(f"VM {vm_id} does not exist or does not belong to {principal.login}")
        if vm.blocked:
            raise Forbidden("The requested virtual machine is offline for maintenance")
        return vm

    # ---- the flow ------------------------------------------------------------------------
    def connect(
        self,
        principal: Principal,
        vm_id: int,
        client_params: Mapping[str, str],
        *,
        user_ip: str,
        progress: Progress,
        cancelled: threading.Event,
        on_acquired: Callable[[], None] = lambda: None,
        transport: Transport = "nx",
    ) -> Target:
        """Take the session, get the VM running and its X session listening; the
        target to relay to. Blocking: run it in a pool, ``cancelled`` set when the
        client leaves or the session is aborted."""
        config = self._config
        machine = m.ConnectMachine(
            vm_id, host_id=self._host_id, timeouts=m.Timeouts.from_config(config),
            client_params=client_params, transport=transport,
        )  # fmt: skip
        run = _Run(self, machine, principal, user_ip, cancelled, config)
        released = False
        try:
            step = machine.handle(m.Begin(), time.monotonic())
            while True:
                for text in step.progress:
                    progress(text)
                action = step.action
                if isinstance(action, m.HandOver):
                    return run.target(action.ready)
                if isinstance(action, m.Fail):
                    if action.release:
                        released = True
                        self.release(vm_id)
                    raise action.error
                event = run.carry_out(action)
                step = machine.handle(event, time.monotonic())
                if isinstance(event, m.SessionAcquired):
                    on_acquired()
        except BaseException:
            if machine.acquired and not released:
                try:  # at once: a failed connect's answer does not wait for a primary
                    with self._engine.begin() as conn:
                        store.release_session(conn, vm_id, self._host_id)
                except Exception as exc:  # the database is gone (or the L7R stopping and
                    # its engine disposed): the first error says so; the next connect on
                    # this node frees the row as a session left by a crash
                    log.info("VM %s: the session could not be released: %s", vm_id, exc)
            raise
        finally:
            if run.taking:
                self._mark_taking(vm_id, -1)

    def _vma_params(
        self,
        conn: Connection,
        principal: Principal,
        vm_id: int,
        client_params: Mapping[str, str],
        slave_key: str,
    ) -> dict[str, str]:
        params_id = store_auth_params(conn, principal.params)
        token = issue_token(
            conn, principal.user_id, multi_use=True, vm_id=vm_id, auth_params_id=params_id,
            expires_by=principal.token_expires,
        )  # fmt: skip
        return {
            **client_params,
            "auth_token": token,
            "host_address": self._host_address,
            **store.merged_properties(conn, vm_id),
            **principal.params,
            "qvd.slave.key": slave_key,
        }

    # ---- after the flow ------------------------------------------------------------------
    def finish(self, vm_id: int) -> None:
        """``connecting`` → ``connected``; refused if the session was taken over."""

        def mark(conn: Connection) -> bool:
            if not store.mark_connected(conn, vm_id, self._host_id):
                return False
            store.bump_counter(conn, self._host_id, "nx_ok")
            return True

        def connected_here(conn: Connection) -> bool:  # the mark's COMMIT went unanswered
            rt = store.runtime(conn, vm_id)
            return (
                rt.user_state == "connected" and rt.l7r_host_id == self._host_id
                and rt.user_cmd is None
            )  # fmt: skip

        if not self.step(mark, f"VM {vm_id}: marking the session connected", connected_here):
            raise Aborted(f"the session of VM {vm_id} was taken over by another client")

    def release(self, vm_id: int) -> None:
        self.step(
            lambda conn: store.release_session(conn, vm_id, self._host_id),
            f"VM {vm_id}: releasing the session",
        )

    def release_seen(self, vm_id: int) -> store.Runtime:
        """``release``, answering the VM's row as it was just before (why the session
        ended, for the history: taken over, VM stopping)."""

        def release(conn: Connection) -> store.Runtime:
            seen = store.runtime(conn, vm_id)
            store.release_session(conn, vm_id, self._host_id)
            return seen

        return self.step(release, f"VM {vm_id}: releasing the session")

    # ---- start, stop, restart (the rules of qvd.db.vmrules) ------------------------------
    def stop_vm(self, principal: Principal, vm_id: int, progress: Progress) -> str:
        """Stop the user's VM and wait until it has stopped."""
        self.check_vm(principal, vm_id)
        deadline, timeout = self._stop_deadline()
        seen = self._notifier.version(vm_id)
        with self._engine.begin() as conn:
            decision, vm = vmrules.stop(conn, vm_id)
        if decision in (vmrules.StopDecision.STOPPED, vmrules.StopDecision.CANCEL_START):
            return "Machine stopped"
        if decision is vmrules.StopDecision.STOPPING:
            raise Unavailable(f"VM {vm_id} is {vm.vm_state} and cannot be stopped now")
        progress("Stopping virtual machine")
        self._wait_stopped(vm_id, seen, deadline, timeout)
        return "Machine stopped"

    def start_vm(self, principal: Principal, vm_id: int) -> str:
        """Ask for the user's VM to start, without taking its session."""
        self.check_vm(principal, vm_id)
        try:
            with Session(self._engine) as session, session.begin():
                outcome = vmrules.start(session, vm_id, Weights.from_config(self._config))
        except NoHostAvailable as exc:
            raise Unavailable(f"Unable to assign VM {vm_id} to a host: {exc}") from None
        match outcome.decision:
            case vmrules.StartDecision.REQUEST:
                return "Starting virtual machine"
            case vmrules.StartDecision.PENDING:
                return f"VM {vm_id} is about to start"
            case vmrules.StartDecision.UNDERWAY:
                return f"VM {vm_id} is already {outcome.vm.vm_state}"
            case vmrules.StartDecision.STOPPING:
                raise Unavailable(f"VM {vm_id} is stopping; start it once it has stopped")
        raise Unavailable(f"VM {vm_id} is {outcome.vm.vm_state}; an administrator must look at it")

    def restart_vm(self, principal: Principal, vm_id: int, progress: Progress) -> str:
        """Stop the user's VM (if it runs), wait until it has stopped, start it."""
        self.check_vm(principal, vm_id)
        deadline, timeout = self._stop_deadline()
        seen = self._notifier.version(vm_id)
        with self._engine.begin() as conn:
            decision, _ = vmrules.stop(conn, vm_id)
        if decision not in (vmrules.StopDecision.STOPPED, vmrules.StopDecision.CANCEL_START):
            progress("Stopping virtual machine")
            self._wait_stopped(vm_id, seen, deadline, timeout)
        return self.start_vm(principal, vm_id)

    def _stop_deadline(self) -> tuple[float, int]:
        timeout = self._config.get_int("internal.l7r.timeout.vm_stop")
        return time.monotonic() + timeout, timeout

    def _wait_stopped(self, vm_id: int, seen: int, deadline: float, timeout: int) -> None:
        while True:
            with self._engine.connect() as conn:
                rt = store.runtime(conn, vm_id)
            if rt.vm_state == "stopped":
                return
            if time.monotonic() >= deadline:
                raise Unavailable(f"VM {vm_id} did not stop within {timeout} s")
            seen = self._notifier.wait_change(vm_id, seen, POLL)

    # ---- an administrator's view ---------------------------------------------------------
    def spy_endpoint(self, vm_id: int) -> VmaEndpoint:
        """The VMA of a running VM (``Unavailable`` with the reason otherwise)."""
        with self._engine.begin() as conn:
            rt = store.runtime(conn, vm_id)
            if rt.vm_state != "running" or not rt.vm_address:
                raise Unavailable(f"VM {vm_id} is {rt.vm_state}, not running")
            secret = derive_vma_secret(master_secret(conn), vm_id, rt.run_attempts)
        return VmaEndpoint(
            address=rt.vm_address, port=rt.vma_port or DEFAULT_PORT, secret=secret.encode()
        )


class _Run:
    """The I/O of one connect: carries out the machine's actions, one event each."""

    def __init__(
        self,
        flow: ConnectFlow,
        machine: m.ConnectMachine,
        principal: Principal,
        user_ip: str,
        cancelled: threading.Event,
        config: Config,
    ) -> None:
        self._flow = flow
        self._engine = flow._engine
        self._notifier = flow._notifier
        self._machine = machine
        self._vm_id = machine.vm_id
        self._principal = principal
        self._user_ip = user_ip
        self._cancelled = cancelled
        self._config = config
        self._seen = 0  # the VM's notification counter before the last read
        self._vma: VmaClient | None = None
        self._params: dict[str, str] = {}
        self._slave_key = ""
        self._secret = b""
        self.taking = False  # counted in the flow's sessions being taken on this node
        self.took_over = False  # another connection held the session and was asked to go

    def carry_out(self, action: m.Action) -> m.Event:
        if self._cancelled.is_set():
            return self._cancellation()
        match action:
            case m.AcquireSession():
                return self._acquire()
            case m.ReleaseStaleSession():
                self._flow.step(
                    lambda conn: store.release_session(conn, self._vm_id, self._flow._host_id),
                    f"VM {self._vm_id}: releasing a stale session",
                )
                return m.StaleReleased()
            case m.AskToAbort():
                # twice is harmless: the abort asked again, or the stale row found cleared
                holder = self._flow.step(
                    lambda conn: store.ask_to_abort(conn, self._vm_id),
                    f"VM {self._vm_id}: asking the holder to let go",
                )
                self.took_over = self.took_over or holder is not None
                return m.AbortAsked(holder=holder)
            case m.Wait(until=until, on_change=on_change):
                return self._wait(until, on_change=on_change)
            case m.ReadRuntime():
                return m.RuntimeRead(runtime=self._runtime())
            case m.RequestStart():
                return self._request_start()
            case m.StartX():
                return self._x_start(action)
            case m.WaitX(timeout=timeout):
                assert self._vma is not None
                try:
                    return m.XObserved(x_state=self._vma.x_wait(X_LEAVE, timeout))
                except VmaError as exc:
                    return m.XWaitFailed(reason=str(exc))
        raise AssertionError(f"not an action to carry out: {action!r}")

    def _cancellation(self) -> m.Event:
        """The client left, or (once the session is ours) it was taken over."""
        if self._machine.acquired and m.taken_over(self._runtime(), self._flow._host_id):
            return m.AbortRequested()
        return m.ClientGone()

    def _runtime(self) -> store.Runtime:
        self._seen = self._notifier.version(self._vm_id)
        return self._flow.step(
            lambda conn: store.runtime(conn, self._vm_id), f"VM {self._vm_id}: reading its state"
        )

    def _acquire(self) -> m.Event:
        self._seen = self._notifier.version(self._vm_id)
        host_id, pid, user_id = self._flow._host_id, os.getpid(), self._principal.user_id

        def claim(conn: Connection) -> store.Runtime | None:
            """None when the session is ours (once committed), else the row as found."""
            if not self.taking:
                # counted before the commit makes the row ours: no neighbour on this node
                # can see it ours and not counted (once, however often this runs again)
                self._flow._mark_taking(self._vm_id, +1)
                self.taking = True
            if store.acquire_session(conn, self._vm_id, host_id, pid, user_id, self._user_ip):
                return None
            self._untake()
            return store.runtime(conn, self._vm_id)

        def ours(conn: Connection) -> store.Runtime | None:
            """After a claim whose COMMIT went unanswered: the row names this process
            and this user's address as the connecting holder, or it was not taken."""
            rt = store.runtime(conn, self._vm_id)
            row = conn.execute(
                text("SELECT l7r_pid, real_user_id, user_ip FROM vm_runtimes WHERE vm_id = :v"),
                {"v": self._vm_id},
            ).one()
            if (
                rt.user_state == "connecting" and rt.l7r_host_id == host_id and rt.user_cmd is None
                and tuple(row) == (pid, user_id, self._user_ip)
            ):  # fmt: skip
                return None
            self._untake()
            return rt

        seen = self._flow.step(claim, f"VM {self._vm_id}: taking the session", ours)
        if seen is None:
            return m.SessionAcquired()
        return m.SessionRefused(runtime=seen, held_here=self._flow._held_here(self._vm_id))

    def _untake(self) -> None:
        if self.taking:
            self._flow._mark_taking(self._vm_id, -1)
            self.taking = False

    def _wait(self, until: float, *, on_change: bool) -> m.Event:
        timeout = max(0.0, min(POLL, until - time.monotonic()))
        if on_change:
            self._notifier.wait_change(self._vm_id, self._seen, timeout)
        else:
            self._cancelled.wait(timeout)
        return self._cancellation() if self._cancelled.is_set() else m.Waited()

    def _request_start(self) -> m.Event:
        self._seen = self._notifier.version(self._vm_id)
        weights = Weights.from_config(self._config)

        def request(conn: Connection) -> vmrules.StartOutcome:
            # a claim from 'stopped' with no command pending: run again after an unknown
            # COMMIT it finds the start asked (PENDING) or under way, never asks twice
            with Session(bind=conn) as session:
                return vmrules.start(session, self._vm_id, weights)

        try:
            outcome = self._flow.step(request, f"VM {self._vm_id}: asking for its start")
        except NoHostAvailable as exc:
            return m.NoHost(reason=str(exc))
        if outcome.host_id is not None:
            return m.StartRequested(host_id=outcome.host_id)
        return m.StartRefused(decision=outcome.decision, vm_state=outcome.vm.vm_state)

    def _x_start(self, action: m.StartX) -> m.Event:
        if self._vma is None:
            self._slave_key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(64))

            def prepare(conn: Connection) -> tuple[dict[str, str], str]:
                # run again after an unknown COMMIT: one more token, the first expires unused
                params = self._flow._vma_params(
                    conn, self._principal, self._vm_id, action.client_params, self._slave_key
                )
                return params, derive_vma_secret(
                    master_secret(conn), self._vm_id, action.run_attempts
                )

            self._params, secret = self._flow.step(
                prepare, f"VM {self._vm_id}: preparing the X session's parameters"
            )
            # the VMA lets the in-VM viewer (not the L7R) attach a browser's session
            self._params["qvd.client.transport"] = self._machine.transport
            self._secret = secret.encode()
            self._vma = VmaClient(
                action.address, secret=secret, port=action.vma_port or DEFAULT_PORT,
                timeout=float(self._config.get_int("internal.l7r.timeout.vma")),
            )  # fmt: skip
        try:
            result = self._vma.x_start(self._params)
        except VmaError as exc:
            refused = isinstance(exc, VmaAuthError) or (
                isinstance(exc, VmaHttpError) and exc.status < 500
            )
            return m.XStartFailed(reason=str(exc), retryable=not refused)
        port = result.get("port")
        return m.XStarted(
            port=port if isinstance(port, int) else None, cookie=str(result.get("cookie", ""))
        )

    def target(self, ready: m.Ready) -> Target:
        port = ready.vma_port or DEFAULT_PORT
        return Target(
            vm_id=ready.vm_id, address=ready.address, port=ready.x_port or DEFAULT_X_PORT,
            cookie=ready.cookie, slave_key=self._slave_key,
            vma=VmaEndpoint(address=ready.address, port=port, secret=self._secret),
            took_over=self.took_over,
        )  # fmt: skip
