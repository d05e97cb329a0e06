"""What each L7R endpoint does, apart from the bytes (blocking; the server runs these
in worker threads). Every function returns a ``Reply`` or raises an ``L7rError``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Engine

from qvd.config import Config
from qvd.db import LiveConfig
from qvd.db.failover import lost_connection
from qvd.l7r import store
from qvd.l7r.auth import Authenticator, Principal, issue_token, store_auth_params
from qvd.l7r.auth.chain import FailureSink
from qvd.l7r.dbsteps import failover_wait, retry_lost
from qvd.l7r.errors import Unauthorized, Unavailable

T = TypeVar("T")

__all__ = ["Node", "Reply", "json_body"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_body(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=True) + "\n").encode("ascii")


class Node:
    """This node's L7R state: config (refreshed from the database), the authenticator."""

    def __init__(
        self,
        live_config: LiveConfig,
        engine: Engine,
        host_id: int,
        *,
        on_auth_failure: FailureSink = lambda source: None,
    ) -> None:
        self.engine = engine
        self.host_id = host_id
        self._live_config = live_config
        self.authenticator = Authenticator(live_config.file_config, on_failure=on_auth_failure)

    @property
    def config(self) -> Config:
        """The live configuration; while a failover keeps its rows from being read, the
        last one read (asked on the event loop, which must not wait for a primary)."""
        try:
            return self._live_config.get()
        except Exception as exc:
            if not lost_connection(exc):
                raise
            return self._live_config.last_known()

    # ---- node checks ----------------------------------------------------------------------
    def ping(self) -> Reply:
        with self.engine.connect() as conn:
            status = store.host_status(conn, self.host_id)
        if status is None:
            raise Unavailable("Host is not registered in the database")
        state, blocked = status
        if blocked:
            raise Unavailable("Server is blocked")
        if state != "running":
            raise Unavailable(f"Server is {state}")
        return Reply(body=b"I am alive!")

    def _retrying(self, call: Callable[[], T], what: str) -> T:
        """``call`` again while a failover cuts its connection (``dbsteps.retry_lost``):
        for the steps before a connect, whose writes are counters and token use."""
        wait = failover_wait(self._live_config.file_config)
        return retry_lost(call, wait=wait, what=what)

    def check_node(self, *, need_running: bool) -> None:
        def read() -> tuple[str, bool] | None:
            with self.engine.begin() as conn:
                status = store.host_status(conn, self.host_id)
                store.bump_counter(conn, self.host_id, "http_requests")
            return status

        status = self._retrying(read, "checking the node")
        if status is None:
            raise Unavailable("Host is not registered in the database")
        if status[1]:
            raise Unavailable("Server is blocked")
        if need_running and status[0] != "running":
            raise Unavailable(f"Server is {status[0]}")

    # ---- authentication --------------------------------------------------------------------
    def login(self, headers: Mapping[str, str], address: str) -> Principal:
        return self._retrying(lambda: self._login(headers, address), "authenticating")

    def _login(self, headers: Mapping[str, str], address: str) -> Principal:
        config = self.config
        with self.engine.connect() as conn:
            store.bump_counter(conn, self.host_id, "auth_attempts")
            conn.commit()
            principal = self.authenticator.login(conn, config, headers, address)
            store.bump_counter(conn, self.host_id, "auth_ok")
            conn.commit()
        return principal

    def recheck(self, principal: Principal) -> None:
        """Refuse (401) a principal a keep-alive connection kept, once its user is
        blocked, deleted or has a new password, its tenant is blocked or its token
        expired: each request of the connection is answered for the user as it is now."""

        def recheck() -> None:
            with self.engine.connect() as conn:
                self.authenticator.recheck(conn, principal)

        self._retrying(recheck, "checking the user again")

    # ---- endpoints ------------------------------------------------------------------------
    def list_of_vm(self, principal: Principal, *, applications: bool = False) -> Reply:
        with self.engine.connect() as conn:
            vms = store.list_vms(conn, principal.user_id, applications=applications)
        return Reply(body=json_body(vms), content_type="application/json")

    def authenticate_user(self, principal: Principal, store_auth: bool) -> Reply:
        if not store_auth:
            return Reply(body=json_body({}), content_type="application/json")
        with self.engine.begin() as conn:
            params_id = store_auth_params(conn, principal.params)
        return Reply(body=json_body({"auth_params_id": params_id}), content_type="application/json")

    def create_auth_token(self, principal: Principal) -> Reply:
        with self.engine.begin() as conn:
            params_id = store_auth_params(conn, principal.params)
            token = issue_token(  # no wider than a token this login used
                conn,
                principal.user_id,
                multi_use=principal.token_multi_use,
                vm_id=principal.token_vm_id,
                auth_params_id=params_id,
                expires_by=principal.token_expires,
            )
        return Reply(
            body=json_body({"auth_params_id": params_id, "auth_token": token}),
            content_type="application/json",
        )


def unauthorized_headers(exc: Exception) -> list[tuple[str, str]]:
    if isinstance(exc, Unauthorized):
        return [("WWW-Authenticate", 'Basic realm="QVD"')]
    return []
