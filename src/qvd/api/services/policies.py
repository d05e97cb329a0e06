"""Policies: the rules the policy leader applies to a tenant's (or one OSF's) desktops.

``policy_get_list`` (ACL ``policy.see-main.``), ``policy_create`` (``policy.create.``),
``policy_update`` (``policy.update.``), ``policy_delete`` (``policy.delete.``), scoped to
the caller's tenant like every object (a superadmin names the tenant with
``tenant_id``). What a kind needs (``qvd.db.models.POLICY_KINDS``):

- ``idle_stop``, ``idle_suspend``, ``max_session``: ``minutes``
- ``scheduled_start``, ``scheduled_stop``: ``at`` (``HH:MM``) or ``at_minute`` (0-1439),
  and ``weekdays`` (a mask, Monday = 1 … Sunday = 64, or day names ``mon,tue,…`` as one
  text or a list; every
  day by default) in ``timezone`` (an IANA zone, ``UTC`` by default)
- ``warm_pool``: ``size`` (desktops kept running) and ``minutes`` (the window ahead in
  which their users usually connect)

A field the kind does not read is refused, so a policy says only what it does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from functools import cache
from typing import Any

from sqlalchemy import func, literal, select

from qvd.api.actions.core import ActionRequest, ActionResult, Args, Ctx, for_each
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.errors import InvalidRequest, NotFound, Status
from qvd.api.services.common import (
    created_fields,
    crud_actions,
    in_scope,
    tenant_arg,
    tenant_fields,
)
from qvd.config.names import VM_NAME
from qvd.db.models import POLICY_KINDS, Osf, Policy
from qvd.policy.decide import known_timezone

__all__ = ["ACTIONS", "POLICY_NAME", "SPEC"]

POLICY_NAME = replace(
    VM_NAME, kind="policy name", summary=VM_NAME.summary.replace("a VM name", "a policy name")
)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NEEDS: dict[str, tuple[str, ...]] = {
    "idle_stop": ("minutes",),
    "idle_suspend": ("minutes",),
    "max_session": ("minutes",),
    "scheduled_start": ("at_minute",),
    "scheduled_stop": ("at_minute",),
    "warm_pool": ("size", "minutes"),
}
_SCHEDULED = ("scheduled_start", "scheduled_stop")
_BAD = Status.BAD_ARGUMENT_VALUE

_osf_name = select(Osf.name).where(Osf.id == Policy.osf_id).correlate(Policy).scalar_subquery()

_FIELDS: dict[str, Field] = {
    "id": Field(expr=Policy.id, kind=int),
    "name": Field(expr=Policy.name),
    "kind": Field(expr=Policy.kind),
    "enabled": Field(expr=Policy.enabled, kind=bool),
    "osf_id": Field(expr=Policy.osf_id, kind=int),
    "osf_name": Field(expr=_osf_name, kind=str),
    "minutes": Field(expr=Policy.minutes, kind=int),
    "at_minute": Field(expr=Policy.at_minute, kind=int),
    "weekdays": Field(expr=Policy.weekdays, kind=int),
    "timezone": Field(expr=Policy.timezone),
    "size": Field(expr=Policy.size, kind=int),
    "last_run_at": Field(expr=Policy.last_run_at, kind=dt.datetime),
    **created_fields("policy", Policy),
    **tenant_fields(Policy.tenant_id),
}


@cache
def _base() -> Any:
    return select(literal(1)).select_from(Policy)


SPEC = ListSpec(
    object="policy",
    fields=_FIELDS,
    base=_base,
    id_expr=Policy.id,
    scope=in_scope(Policy.tenant_id),
)


# ---- arguments ----------------------------------------------------------------------------


def _kind(args: Args, required: bool) -> str | None:
    kind: str | None = args.take("kind", str, required=required)
    if kind is not None and kind not in POLICY_KINDS:
        raise InvalidRequest(f"policy: kind must be one of {', '.join(POLICY_KINDS)}", _BAD)
    return kind


def _weekdays(args: Args) -> int | None:
    if not args.has("weekdays"):
        return None
    raw = args.take("weekdays", list) if isinstance(args.peek("weekdays"), list) else None
    text = ",".join(str(d) for d in raw) if raw is not None else str(args.take("weekdays", str))
    text = text.strip().lower()
    if text.isdigit():
        mask = int(text)
    else:
        mask = 0
        for part in (p.strip() for p in text.split(",")):
            if part not in _DAYS:
                raise InvalidRequest(
                    "policy: weekdays is a mask 0-127 (Monday = 1 … Sunday = 64) or day names "
                    f"({','.join(_DAYS)})",
                    _BAD,
                )
            mask |= 1 << _DAYS.index(part)
    if not 0 <= mask <= 127:
        raise InvalidRequest(f"policy: weekdays must be 0-127, not {mask}", _BAD)
    return mask


def _at_minute(args: Args) -> int | None:
    if args.has("at"):
        if args.has("at_minute"):
            raise InvalidRequest("policy: give 'at' (HH:MM) or 'at_minute', not both", _BAD)
        text = args.text("at", max_len=5) or ""
        hours, sep, minutes = text.partition(":")
        if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
            raise InvalidRequest(f"policy: 'at' is a time HH:MM, not {text!r}", _BAD)
        if int(hours) > 23 or int(minutes) > 59:
            raise InvalidRequest(f"policy: 'at' is a time 00:00-23:59, not {text!r}", _BAD)
        return int(hours) * 60 + int(minutes)
    minute: int | None = args.take("at_minute", int, nullable=True)
    if minute is not None and not 0 <= minute <= 1439:
        raise InvalidRequest(f"policy: at_minute must be 0-1439, not {minute}", _BAD)
    return minute


def _positive(args: Args, name: str, lowest: int) -> int | None:
    value: int | None = args.take(name, int, nullable=True)
    if value is not None and value < lowest:
        raise InvalidRequest(f"policy: {name} must be at least {lowest}, not {value}", _BAD)
    return value


def _timezone(args: Args) -> str | None:
    zone = args.text("timezone", max_len=64)
    if zone is not None and not known_timezone(zone):
        raise InvalidRequest(
            f"policy: {zone!r} is not a known time zone (an IANA name such as Europe/Madrid)",
            _BAD,
        )
    return zone


def _osf(ctx: Ctx, args: Args, tenant_id: int) -> int | None:
    """The OSF argument: one of the policy's tenant (any other is not found)."""
    osf_id: int | None = args.take("osf_id", int, nullable=True)
    if osf_id is None:
        return None
    found = ctx.session.scalar(select(Osf.id).where(Osf.id == osf_id, Osf.tenant_id == tenant_id))
    if found is None:
        raise NotFound(f"policy: there is no OSF {osf_id}", Status.MISSING_REFERENCE_ARG)
    return osf_id


def _check_kind(policy: Policy) -> None:
    """What the kind needs is there, and nothing it does not read."""
    needs = _NEEDS[policy.kind]
    for column in ("minutes", "at_minute", "size"):
        value = getattr(policy, column)
        if column in needs and value is None:
            raise InvalidRequest(
                f"policy: a {policy.kind} policy needs {column}"
                + (" (or at: HH:MM)" if column == "at_minute" else ""),
                Status.MISSING_ARGUMENT,
            )
        if column not in needs and value is not None:
            raise InvalidRequest(f"policy: a {policy.kind} policy takes no {column}", _BAD)
    if policy.kind not in _SCHEDULED and policy.weekdays != 127:
        raise InvalidRequest(f"policy: a {policy.kind} policy takes no weekdays", _BAD)


def _apply(ctx: Ctx, args: Args, policy: Policy, *, create: bool) -> None:
    if (name := args.name(rule=POLICY_NAME, required=create)) is not None:
        policy.name = name
    if (kind := _kind(args, required=create)) is not None:
        policy.kind = kind
    if (enabled := args.take("enabled", bool)) is not None:
        policy.enabled = enabled
    if args.has("osf_id"):
        policy.osf_id = _osf(ctx, args, policy.tenant_id)
    for column, lowest in (("minutes", 1), ("size", 0)):
        if args.has(column):
            setattr(policy, column, _positive(args, column, lowest))
    if args.has("at") or args.has("at_minute"):
        policy.at_minute = _at_minute(args)
    if (weekdays := _weekdays(args)) is not None:
        policy.weekdays = weekdays
    if (zone := _timezone(args)) is not None:
        policy.timezone = zone
    args.finish()
    _check_kind(policy)


# ---- actions ------------------------------------------------------------------------------


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "policy", ctx.principal)
    tenant_id = tenant_arg(args, ctx.session, ctx.principal, "policy")
    policy = Policy(
        tenant_id=tenant_id, creation_admin_id=ctx.principal.admin_id, weekdays=127,
        timezone="UTC", enabled=True,
    )  # fmt: skip
    _apply(ctx, args, policy, create=True)
    ctx.session.add(policy)
    ctx.session.flush()
    return ActionResult(rows=[{"id": policy.id}], affected=[(policy.id, policy.name)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(policy_id: int) -> str | None:
        policy = ctx.session.get_one(Policy, policy_id, with_for_update=True)
        args = Args(req.arguments, "policy", ctx.principal)
        before = (policy.kind, policy.at_minute, policy.weekdays, policy.timezone)
        _apply(ctx, args, policy, create=False)
        if (policy.kind, policy.at_minute, policy.weekdays, policy.timezone) != before:
            # a new schedule starts now: no occurrence before this change is run
            policy.last_run_at = ctx.session.scalar(select(func.now()))
        ctx.session.flush()
        return policy.name

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(policy_id: int) -> str | None:
        policy = ctx.session.get_one(Policy, policy_id)
        ctx.session.delete(policy)
        return policy.name

    return for_each(ctx, SPEC, req.filters, work)


ACTIONS = crud_actions(
    "policy",
    SPEC,
    see=("policy.see-main.",),
    create=_create,
    update=_update,
    delete=_delete,
)
