"""The action catalogue and the one function both faces call to run an action.

``run_action`` checks the action's ACL, runs it in one transaction (each object of a
multi-object action in its own savepoint), commits what succeeded, writes the audit
log for mutating actions, and raises :class:`MultipleFailures` (1200) when some
objects failed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from qvd.api.actions.audit import AuditEntry, write_audit
from qvd.api.actions.auth import AclCache
from qvd.api.actions.core import Action, ActionRequest, ActionResult, Ctx, db_error
from qvd.api.actions.principal import Principal
from qvd.api.errors import ActionError, ApiError, MultipleFailures, Status
from qvd.api.services import (
    administrators,
    configs,
    dis,
    hosts,
    logs,
    osfs,
    policies,
    properties,
    roles,
    sessions,
    spy,
    statistics,
    tenants,
    users,
    views,
    vms,
)
from qvd.config import Config
from qvd.db import DatabaseUnreachable, LiveConfig, lost_connection
from qvd.db.failover import retry_delays

__all__ = ["CATALOGUE", "Runner", "lookup_action", "run_action"]

CATALOGUE: Mapping[str, Action] = {
    a.name: a
    for module in (
        administrators,
        configs,
        dis,
        hosts,
        logs,
        osfs,
        policies,
        properties,
        roles,
        sessions,
        spy,
        statistics,
        tenants,
        users,
        views,
        vms,
    )
    for a in module.ACTIONS
}

# action -> what the audit log keeps of its arguments (secrets left out)
_AUDIT_REDACTIONS = {**configs.AUDIT_REDACTIONS}

# changes that alter who may do what (cached ACLs and session principals are dropped)
_ACL_OBJECTS = {"role", "administrator", "acl", "tenant"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Runner:
    """What every action needs from the app: database, configuration (the file's, with
    the database's rows over it), ACL cache."""

    engine: Engine
    live_config: LiveConfig
    acl_cache: AclCache

    @property
    def config(self) -> Config:
        return self.live_config.get()


def lookup_action(name: Any) -> Action:
    """The catalogue entry of ``name`` (4110 when empty, 4100 when unknown)."""
    if not isinstance(name, str) or not name.strip():
        raise ActionError("no action given ('action' is empty)", Status.EMPTY_ACTION)
    action = CATALOGUE.get(name)
    if action is None:
        raise ActionError(f"unknown action {name!r}", Status.UNKNOWN_ACTION)
    return action


class _LostBeforeCommit(Exception):
    """The database connection went before COMMIT: nothing was made, run it again."""


def _run_retrying(
    runner: Runner, principal: Principal, action: Action, req: ActionRequest
) -> ActionResult:
    """The action in one transaction, re-run while the database connection is lost
    before COMMIT (a failover: up to ``database.failover_wait`` s), never after it
    (the retry rule of ``qvd.db.failover``)."""
    # database.* tokens are node-local: the file's value, without asking the database
    delays = retry_delays(runner.live_config.file_config.get_float("database.failover_wait"))
    for delay in [*delays, None]:
        try:
            return _run_once(runner, principal, action, req)
        except _LostBeforeCommit as lost:
            if delay is None:
                raise ApiError(
                    f"{action.name}: the database is unavailable ({lost}); nothing was "
                    "changed, try again",
                    Status.INTERNAL,
                ) from None
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _run_once(
    runner: Runner, principal: Principal, action: Action, req: ActionRequest
) -> ActionResult:
    with Session(runner.engine) as session:
        session.begin()
        try:
            # the configuration's rows are read again now and then: inside the retry too
            config = runner.config
            ctx = Ctx(session=session, principal=principal, config=config, engine=runner.engine)
            result = action.handler(ctx, req)
        except (DBAPIError, DatabaseUnreachable) as exc:
            with contextlib.suppress(DBAPIError, DatabaseUnreachable):
                session.rollback()
            if lost_connection(exc) or not isinstance(exc, DBAPIError):
                raise _LostBeforeCommit(str(exc).splitlines()[0]) from None
            raise db_error(exc, action.name) from None
        try:
            session.commit()
        except DBAPIError as exc:
            if lost_connection(exc):
                raise ApiError(
                    f"{action.name}: the database connection was lost during the commit "
                    "(a failover?): the change may or may not have been made; look "
                    "before trying again",
                    Status.INTERNAL,
                ) from None
            raise db_error(exc, action.name) from None
        return result


def run_action(runner: Runner, principal: Principal, req: ActionRequest) -> ActionResult:
    action = lookup_action(req.action)
    result: ActionResult | None = None
    try:
        if action.acls:
            principal.require(*action.acls, what=f"the action {action.name!r}")
        result = _run_retrying(runner, principal, action, req)
    except ApiError as exc:
        if action.mutating:
            _audit(runner, principal, action, req, [AuditEntry(None, None, exc.code)])
        raise
    if action.mutating:
        entries = [AuditEntry(i, n, Status.OK) for i, n in result.affected]
        entries += [AuditEntry(i, None, e.code) for i, e in result.failures.items()]
        _audit(runner, principal, action, req, entries or [AuditEntry(None, None, Status.OK)])
        if action.qvd_object in _ACL_OBJECTS:
            runner.acl_cache.clear()
        if action.qvd_object == "config":
            runner.live_config.expire()
    if result.failures:
        raise MultipleFailures(result.failures, result.selected)
    return result


def _audit(
    runner: Runner,
    principal: Principal,
    action: Action,
    req: ActionRequest,
    entries: list[AuditEntry],
) -> None:
    args: dict[str, Any] = {}
    if req.arguments:
        redact = _AUDIT_REDACTIONS.get(action.name)
        args["arguments"] = redact(req.arguments) if redact is not None else req.arguments
    if req.filters:
        args["filters"] = req.filters
    write_audit(
        runner.engine,
        principal=principal,
        action=action.name,
        type_of_action=action.type_of_action,
        qvd_object=action.qvd_object,
        arguments=args or None,
        entries=entries,
        source=principal.source,
        address=principal.address,
        known_secrets=runner.live_config.get().secret_values(),
    )
