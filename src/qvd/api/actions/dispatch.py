"""The action catalogue and the one function both faces call to run an action.

``run_action`` checks the action's ACL, runs it in one transaction (each object of a
multi-object action in its own savepoint), commits what succeeded, writes the audit
log for mutating actions, and raises :class:`MultipleFailures` (1200) when some
objects failed.
"""

from __future__ import annotations

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
from qvd.db import LiveConfig

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


def run_action(runner: Runner, principal: Principal, req: ActionRequest) -> ActionResult:
    action = lookup_action(req.action)
    result: ActionResult | None = None
    try:
        if action.acls:
            principal.require(*action.acls, what=f"the action {action.name!r}")
        with Session(runner.engine) as session, session.begin():
            ctx = Ctx(
                session=session,
                principal=principal,
                config=runner.config,
                engine=runner.engine,
            )
            try:
                result = action.handler(ctx, req)
            except DBAPIError as exc:
                raise db_error(exc, action.name) from None
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
