"""The connect flow of reference §3.4 against the database and the VMA (blocking).

    take the session (abort another L7R's via user_cmd + NOTIFY)
    → assign a host (the shared load balancer) → vm_cmd=start, wait (woken by NOTIFY)
    → VMA x_start with the merged properties → wait for ``listening``

Each step moves a ``Handshake``, whose text goes to the client as a 102. Failures
raise ``L7rError`` subclasses whose message is the real reason; the server releases
the session (``user_state`` back to ``disconnected``) on any failure.
"""

from __future__ import annotations

import os
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from qvd.config import Config
from qvd.db import LiveConfig
from qvd.db.loadbalancer import NoHostAvailable, Weights, pick_host_for_vm
from qvd.db.vmasecret import derive_vma_secret, master_secret
from qvd.l7r import store
from qvd.l7r.auth import Principal, issue_token, store_auth_params
from qvd.l7r.errors import Forbidden, NotFound, Unavailable
from qvd.l7r.notify import Notifier
from qvd.l7r.states import ConnectState, Handshake
from qvd.vma.client import VmaClient, VmaError

__all__ = ["POLL", "ConnectFlow", "Progress", "Target"]

S = ConnectState
Progress = Callable[[str], None]
POLL = 1.0  # seconds a wait lasts without a notification (the lost-NOTIFY fallback)
# x_state polls while nxagent comes up: a resumed agent listens within a few ms, a new
# one within a few hundred, so the first polls come quickly and later ones less often
X_POLL_FIRST, X_POLL_MAX = 0.005, 0.05
_KEY_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where the relay goes once the X session listens."""

    vm_id: int
    address: str
    port: int
    cookie: str
    slave_key: str


class Aborted(Unavailable):
    """Another client took the session over while this one was connecting."""


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

    @property
    def _config(self) -> Config:
        """The file configuration with the database's rows over it."""
        return self._live_config.get()

    # ---- checks before anything is written -------------------------------------------
    def check_vm(self, principal: Principal, vm_id: int) -> store.VmRow:
        if principal.token_vm_id is not None and principal.token_vm_id != vm_id:
            raise Forbidden("vm_id does not match with provided token")
        with self._engine.connect() as conn:
            vm = store.vm_row(conn, vm_id)
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
    ) -> Target:
        hs = Handshake(vm_id)
        self._take_session(hs, principal, user_ip, progress, cancelled)
        on_acquired()
        try:
            rt = self._ensure_running(hs, progress, cancelled)
            return self._start_x(hs, principal, rt, client_params, progress, cancelled)
        except BaseException:
            self.release(vm_id)
            raise

    def _wait(self, vm_id: int, seen: int, deadline: float, cancelled: threading.Event) -> int:
        if cancelled.is_set():
            raise Unavailable("the client went away")
        timeout = max(0.0, min(POLL, deadline - time.monotonic()))
        return self._notifier.wait_change(vm_id, seen, timeout)

    def _take_session(
        self,
        hs: Handshake,
        principal: Principal,
        user_ip: str,
        progress: Progress,
        cancelled: threading.Event,
    ) -> None:
        vm_id = hs.vm_id
        timeout = self._config.get_int("internal.l7r.timeout.takeover")
        deadline = time.monotonic() + timeout
        asked = False
        while True:
            seen = self._notifier.version(vm_id)
            with self._engine.begin() as conn:
                pid = os.getpid()
                if store.acquire_session(
                    conn, vm_id, self._host_id, pid, principal.user_id, user_ip
                ):
                    progress(hs.move(S.ACQUIRED))
                    return
                rt = store.runtime(conn, vm_id)
                if rt.l7r_host_id == self._host_id and not self._holds_session(vm_id):
                    store.release_session(conn, vm_id, self._host_id)  # left by a crash
                    continue
                if not asked or rt.user_cmd is None:
                    holder = store.ask_to_abort(conn, vm_id)
                    if not asked:
                        progress(hs.move(S.ABORTING_OTHER))
                    asked = holder is not None or asked
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"Unable to acquire VM {vm_id}: another client holds its session and did "
                    f"not let go within {timeout} s; close other clients"
                )
            self._wait(vm_id, seen, deadline, cancelled)

    def _check_abort(self, conn: Connection, vm_id: int) -> store.Runtime:
        rt = store.runtime(conn, vm_id)
        if rt.user_cmd == "abort" or rt.l7r_host_id != self._host_id:
            raise Aborted(f"the session of VM {vm_id} was taken over by another client")
        return rt

    def _ensure_running(
        self, hs: Handshake, progress: Progress, cancelled: threading.Event
    ) -> store.Runtime:
        vm_id = hs.vm_id
        with self._engine.begin() as conn:
            rt = self._check_abort(conn, vm_id)
        if rt.vm_state == "running" and rt.vm_address:
            return rt
        if rt.vm_state == "stopping":
            rt = self._wait_stopped(vm_id, cancelled)
            if rt.vm_state == "running" and rt.vm_address:
                return rt
        if rt.host_id is None and rt.vm_state == "stopped":
            progress(hs.move(S.ASSIGNING))
            with Session(self._engine) as session, session.begin():
                try:
                    chosen = pick_host_for_vm(session, vm_id, Weights.from_config(self._config))
                except NoHostAvailable as exc:
                    raise Unavailable(f"Unable to assign VM {vm_id} to a host: {exc}") from None
                store.assign_host(session.connection(), vm_id, chosen)
        timeout = self._config.get_int("internal.l7r.timeout.vm_start")
        deadline = time.monotonic() + timeout
        seen = self._notifier.version(vm_id)
        with self._engine.begin() as conn:
            rt = self._check_abort(conn, vm_id)
            if rt.vm_state == "stopped":
                if not store.request_start(conn, vm_id):
                    raise Unavailable(f"VM {vm_id} cannot be started now (no host assigned)")
                progress(hs.move(S.STARTING_VM))
        progress(hs.move(S.WAITING_VM))
        left_stopped = False
        while True:
            with self._engine.begin() as conn:
                rt = self._check_abort(conn, vm_id)
            if rt.vm_state == "running" and rt.vm_address:
                return rt
            if rt.vm_state != "stopped":
                left_stopped = True
            elif rt.vm_cmd is None and (left_stopped or rt.last_error):
                reason = f": {rt.last_error}" if rt.last_error else ""
                raise Unavailable(f"Failed to start virtual machine {vm_id}{reason}")
            if rt.vm_state in ("zombie", "debugging"):
                raise Unavailable(f"VM {vm_id} is {rt.vm_state}; an administrator must look at it")
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"VM {vm_id} did not reach state 'running' within {timeout} s "
                    f"(it is {rt.vm_state})"
                )
            seen = self._wait(vm_id, seen, deadline, cancelled)

    def _wait_stopped(self, vm_id: int, cancelled: threading.Event) -> store.Runtime:
        """A VM caught while stopping is started again once it has stopped."""
        timeout = self._config.get_int("internal.l7r.timeout.vm_stop")
        deadline = time.monotonic() + timeout
        seen = self._notifier.version(vm_id)
        while True:
            with self._engine.begin() as conn:
                rt = self._check_abort(conn, vm_id)
            if rt.vm_state != "stopping":
                return rt
            if time.monotonic() >= deadline:
                raise Unavailable(f"VM {vm_id} is still stopping after {timeout} s")
            seen = self._wait(vm_id, seen, deadline, cancelled)

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

    def _start_x(
        self,
        hs: Handshake,
        principal: Principal,
        rt: store.Runtime,
        client_params: Mapping[str, str],
        progress: Progress,
        cancelled: threading.Event,
    ) -> Target:
        vm_id = hs.vm_id
        assert rt.vm_address is not None
        slave_key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(64))
        with self._engine.begin() as conn:
            params = self._vma_params(conn, principal, vm_id, client_params, slave_key)
            secret = derive_vma_secret(master_secret(conn), vm_id, rt.run_attempts)
        vma = VmaClient(
            rt.vm_address,
            secret=secret,
            port=rt.vma_port or 3030,
            timeout=float(self._config.get_int("internal.l7r.timeout.vma")),
        )
        progress(hs.move(S.X_STARTING))
        tries = max(1, self._config.get_int("internal.l7r.retry.x_start"))
        result: dict[str, object] | None = None
        last: Exception | None = None
        for attempt in range(tries):
            try:
                result = vma.x_start(params)
                break
            except VmaError as exc:
                last = exc
                if cancelled.is_set():
                    raise Unavailable("the client went away") from None
                with self._engine.begin() as conn:
                    self._check_abort(conn, vm_id)
                time.sleep(min(1.0, 0.05 * 2**attempt))
        if result is None:
            raise Unavailable(f"the VM agent of VM {vm_id} refused to start X: {last}")
        progress(hs.move(S.WAITING_X))
        self._wait_listening(vma, vm_id, cancelled)
        port = result.get("port")
        progress(hs.move(S.RELAYING))
        return Target(
            vm_id=vm_id,
            address=rt.vm_address,
            port=port if isinstance(port, int) else (rt.x_port or 4100),
            cookie=str(result.get("cookie", "")),
            slave_key=slave_key,
        )

    def _wait_listening(self, vma: VmaClient, vm_id: int, cancelled: threading.Event) -> None:
        timeout = self._config.get_int("internal.l7r.timeout.x_start")
        hard = time.monotonic() + self._config.get_int("internal.l7r.timeout.vm_start")
        deadline = time.monotonic() + timeout
        pause = X_POLL_FIRST
        while True:
            try:
                state = vma.x_state()
            except VmaError as exc:
                state = f"unknown ({exc})"
            if state == "listening":
                return
            now = time.monotonic()
            if state == "provisioning":
                deadline = now + timeout
            elif state not in ("starting",) and not state.startswith("unknown"):
                raise Unavailable(f"the X session of VM {vm_id} is {state}, not listening")
            if now >= min(deadline, hard):
                raise Unavailable(f"the X session of VM {vm_id} did not listen within {timeout} s")
            if cancelled.wait(pause):
                raise Unavailable("the client went away")
            pause = min(X_POLL_MAX, pause * 2)

    # ---- after the flow ------------------------------------------------------------------
    def finish(self, vm_id: int) -> None:
        """``connecting`` → ``connected``; refused if the session was taken over."""
        with self._engine.begin() as conn:
            if not store.mark_connected(conn, vm_id, self._host_id):
                raise Aborted(f"the session of VM {vm_id} was taken over by another client")
            store.bump_counter(conn, self._host_id, "nx_ok")

    def release(self, vm_id: int) -> None:
        with self._engine.begin() as conn:
            store.release_session(conn, vm_id, self._host_id)

    def stop_vm(self, principal: Principal, vm_id: int, progress: Progress) -> str:
        self.check_vm(principal, vm_id)
        timeout = self._config.get_int("internal.l7r.timeout.vm_stop")
        deadline = time.monotonic() + timeout
        seen = self._notifier.version(vm_id)
        with self._engine.begin() as conn:
            rt = store.runtime(conn, vm_id)
            if rt.vm_state == "stopped":
                return "Machine stopped"
            if not store.request_stop(conn, vm_id):
                raise Unavailable(f"VM {vm_id} is {rt.vm_state} and cannot be stopped now")
        progress("Stopping virtual machine")
        while True:
            with self._engine.connect() as conn:
                rt = store.runtime(conn, vm_id)
            if rt.vm_state == "stopped":
                return "Machine stopped"
            if time.monotonic() >= deadline:
                raise Unavailable(f"VM {vm_id} did not stop within {timeout} s")
            seen = self._notifier.wait_change(vm_id, seen, POLL)
