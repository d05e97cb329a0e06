"""``qvd_objects_statistics``: counts for the dashboard, each only with its ACL, all
within the caller's tenant scope (reference §5.3). A total (``users_count`` …) needs
any ``stats`` ACL of its object, as in QVD.

``connected_users_count`` counts users with at least one connected VM;
``top_populated_hosts`` lists every host, those with no VM too, as
``{id, name, number_of_vms}`` (VMs not stopped), most populated first;
``vms_with_expiration_date`` lists the VMs whose hard expiration is still ahead, soonest
first, as ``{id, name, expiration, remaining_time}`` (``remaining_time`` in seconds).

Beyond QVD: ``vms_by_state`` (``{state: count}``, every VM state) and ``dis_by_state``
(``{state: count}``, the states some DI is in), so that a dashboard follows every
state change over one ``/api/ws`` socket; and a superadmin may narrow the counts to
one tenant with the filter ``{"tenant_id": N}`` (nodes are global: their counts stay
whole). Any other filter, or ``tenant_id`` from a tenant administrator, is refused
(4220), as the list actions refuse it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, true

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Ctx
from qvd.api.actions.principal import Principal
from qvd.api.errors import Forbidden, InvalidRequest, Status
from qvd.api.services.common import in_scope
from qvd.db.models import VM_STATES, Di, DiRuntime, Host, HostRuntime, Osf, User, Vm, VmRuntime

__all__ = ["ACTIONS", "statistics"]


@dataclass(frozen=True, slots=True)
class _Scope:
    """What the statistics run with: the transaction, the caller and, for a superadmin,
    the one tenant asked for (None: every tenant the caller sees)."""

    session: Any
    principal: Principal
    tenant_id: int | None = None


def _tenant(ctx: _Scope, col: Any) -> Any:
    scope = in_scope(col)(ctx.principal)
    return scope if ctx.tenant_id is None else scope & (col == ctx.tenant_id)


def _count(ctx: _Scope, stmt: Any) -> int:
    return int(ctx.session.scalar(stmt) or 0)


def _users(ctx: _Scope, *where: Any) -> int:
    return _count(
        ctx, select(func.count()).select_from(User).where(_tenant(ctx, User.tenant_id), *where)
    )


def _in_vms(ctx: _Scope, *columns: Any) -> Any:
    """``columns`` over the caller's VMs with their runtimes."""
    return (
        select(*columns)
        .select_from(Vm)
        .join(User, User.id == Vm.user_id)
        .join(VmRuntime, VmRuntime.vm_id == Vm.id)
        .where(_tenant(ctx, User.tenant_id))
    )


def _vms(ctx: _Scope, *where: Any) -> int:
    return _count(ctx, _in_vms(ctx, func.count()).where(*where))


def _hosts(ctx: _Scope, *where: Any) -> int:
    stmt = select(func.count()).select_from(Host).join(HostRuntime, HostRuntime.host_id == Host.id)
    return _count(ctx, stmt.where(true(), *where))


def _dis(ctx: _Scope, *where: Any) -> int:
    stmt = (
        select(func.count())
        .select_from(Di)
        .join(Osf, Osf.id == Di.osf_id)
        .join(DiRuntime, DiRuntime.di_id == Di.id)
        .where(_tenant(ctx, Osf.tenant_id), *where)
    )
    return _count(ctx, stmt)


def _top_hosts(ctx: _Scope) -> list[dict[str, Any]]:
    running = func.count(VmRuntime.vm_id)
    rows = ctx.session.execute(
        select(Host.id, Host.name, running)
        .outerjoin(VmRuntime, (VmRuntime.host_id == Host.id) & (VmRuntime.vm_state != "stopped"))
        .group_by(Host.id, Host.name)
        .order_by(running.desc(), Host.id)
    )
    return [{"id": r[0], "name": r[1], "number_of_vms": int(r[2])} for r in rows]


def _connected_users(ctx: _Scope) -> int:
    stmt = _in_vms(ctx, func.count(func.distinct(Vm.user_id)))
    return _count(ctx, stmt.where(VmRuntime.user_state == "connected"))


def _expiring(ctx: _Scope) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    rows = ctx.session.execute(
        _in_vms(ctx, Vm.id, Vm.name, VmRuntime.vm_expiration_hard)
        .where(VmRuntime.vm_expiration_hard > now)
        .order_by(VmRuntime.vm_expiration_hard, Vm.id)
    )
    return [
        {
            "id": vm_id,
            "name": name,
            "expiration": when.isoformat(),
            "remaining_time": int((when - now).total_seconds()),
        }
        for vm_id, name, when in rows
    ]


def _vms_by_state(ctx: _Scope) -> dict[str, int]:
    rows = ctx.session.execute(
        _in_vms(ctx, VmRuntime.vm_state, func.count()).group_by(VmRuntime.vm_state)
    )
    return {state: 0 for state in VM_STATES} | {str(s): int(n) for s, n in rows}


def _dis_by_state(ctx: _Scope) -> dict[str, int]:
    rows = ctx.session.execute(
        select(DiRuntime.state, func.count())
        .select_from(Di)
        .join(Osf, Osf.id == Di.osf_id)
        .join(DiRuntime, DiRuntime.di_id == Di.id)
        .where(_tenant(ctx, Osf.tenant_id))
        .group_by(DiRuntime.state)
    )
    return {str(s): int(n) for s, n in rows}


_STATS: dict[str, tuple[str, Callable[[_Scope], Any]]] = {
    "users_count": (r"^user\.stats\.", lambda c: _users(c)),
    "blocked_users_count": ("user.stats.blocked", lambda c: _users(c, User.blocked.is_(True))),
    "connected_users_count": (
        "user.stats.connected-users",
        _connected_users,
    ),
    "vms_count": (r"^vm\.stats\.", lambda c: _vms(c)),
    "blocked_vms_count": ("vm.stats.blocked", lambda c: _vms(c, VmRuntime.blocked.is_(True))),
    "running_vms_count": (
        "vm.stats.running-vms",
        lambda c: _vms(c, VmRuntime.vm_state == "running"),
    ),
    "vms_with_expiration_date": ("vm.stats.close-to-expire", _expiring),
    "hosts_count": (r"^host\.stats\.", lambda c: _hosts(c)),
    "blocked_hosts_count": (
        "host.stats.blocked",
        lambda c: _hosts(c, HostRuntime.blocked.is_(True)),
    ),
    "running_hosts_count": (
        "host.stats.running-hosts",
        lambda c: _hosts(c, HostRuntime.state == "running"),
    ),
    "top_populated_hosts": ("host.stats.top-hosts-most-vms", _top_hosts),
    "osfs_count": (
        r"^osf\.stats\.",
        lambda c: _count(c, select(func.count()).select_from(Osf).where(_tenant(c, Osf.tenant_id))),
    ),
    "dis_count": (r"^di\.stats\.", lambda c: _dis(c)),
    "blocked_dis_count": ("di.stats.blocked", lambda c: _dis(c, Di.blocked.is_(True))),
    "vms_by_state": (r"^vm\.stats\.", _vms_by_state),
    "dis_by_state": (r"^di\.stats\.", _dis_by_state),
}


def statistics(ctx: Ctx, tenant_id: int | None = None) -> dict[str, Any]:
    """Every statistic the caller's ACLs allow (within ``tenant_id`` when given)."""
    scope = _Scope(ctx.session, ctx.principal, tenant_id)
    return {name: fn(scope) for name, (acl, fn) in _STATS.items() if ctx.principal.can(acl)}


def _tenant_filter(principal: Principal, filters: Any) -> int | None:
    """The tenant a superadmin narrows the counts to (``{"tenant_id": N}``)."""
    if filters in (None, {}, []):
        return None
    if not isinstance(filters, dict) or set(filters) != {"tenant_id"}:
        raise InvalidRequest(
            'qvd_objects_statistics: the only filter is {"tenant_id": N}', Status.FORBIDDEN_FILTER
        )
    if not principal.superadmin:
        raise Forbidden(
            "qvd_objects_statistics: only superadmins filter by tenant_id", Status.FORBIDDEN_FILTER
        )
    value = filters["tenant_id"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            "qvd_objects_statistics: tenant_id must be a tenant's id", Status.BAD_FILTER_VALUE
        )
    return value


def _handler(ctx: Ctx, req: ActionRequest) -> ActionResult:
    tenant_id = _tenant_filter(ctx.principal, req.filters)
    return ActionResult(rows=[statistics(ctx, tenant_id)], total=1)


ACTIONS = (
    Action(name="qvd_objects_statistics", qvd_object=None, type_of_action="see",
           acls=(r"^[a-z]+\.stats\.",), handler=_handler),
)  # fmt: skip
