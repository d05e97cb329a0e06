"""``qvd_objects_statistics``: counts for the dashboard, each only with its ACL, all
within the caller's tenant scope (reference §5.3). A total (``users_count`` …) needs
any ``stats`` ACL of its object, as in QVD.

``connected_users_count`` counts users with at least one connected VM;
``top_populated_hosts`` lists every host, those with no VM too, as
``{id, name, number_of_vms}`` (VMs not stopped), most populated first;
``vms_with_expiration_date`` lists the VMs whose hard expiration is still ahead, soonest
first, as ``{id, name, expiration, remaining_time}`` (``remaining_time`` in seconds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, true

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Ctx
from qvd.api.services.common import in_scope
from qvd.db.models import Di, DiRuntime, Host, HostRuntime, Osf, User, Vm, VmRuntime

__all__ = ["ACTIONS", "statistics"]


def _tenant(ctx: Ctx, col: Any) -> Any:
    return in_scope(col)(ctx.principal)


def _count(ctx: Ctx, stmt: Any) -> int:
    return int(ctx.session.scalar(stmt) or 0)


def _users(ctx: Ctx, *where: Any) -> int:
    return _count(
        ctx, select(func.count()).select_from(User).where(_tenant(ctx, User.tenant_id), *where)
    )


def _in_vms(ctx: Ctx, *columns: Any) -> Any:
    """``columns`` over the caller's VMs with their runtimes."""
    return (
        select(*columns)
        .select_from(Vm)
        .join(User, User.id == Vm.user_id)
        .join(VmRuntime, VmRuntime.vm_id == Vm.id)
        .where(_tenant(ctx, User.tenant_id))
    )


def _vms(ctx: Ctx, *where: Any) -> int:
    return _count(ctx, _in_vms(ctx, func.count()).where(*where))


def _hosts(ctx: Ctx, *where: Any) -> int:
    stmt = select(func.count()).select_from(Host).join(HostRuntime, HostRuntime.host_id == Host.id)
    return _count(ctx, stmt.where(true(), *where))


def _dis(ctx: Ctx, *where: Any) -> int:
    stmt = (
        select(func.count())
        .select_from(Di)
        .join(Osf, Osf.id == Di.osf_id)
        .join(DiRuntime, DiRuntime.di_id == Di.id)
        .where(_tenant(ctx, Osf.tenant_id), *where)
    )
    return _count(ctx, stmt)


def _top_hosts(ctx: Ctx) -> list[dict[str, Any]]:
    running = func.count(VmRuntime.vm_id)
    rows = ctx.session.execute(
        select(Host.id, Host.name, running)
        .outerjoin(VmRuntime, (VmRuntime.host_id == Host.id) & (VmRuntime.vm_state != "stopped"))
        .group_by(Host.id, Host.name)
        .order_by(running.desc(), Host.id)
    )
    return [{"id": r[0], "name": r[1], "number_of_vms": int(r[2])} for r in rows]


def _connected_users(ctx: Ctx) -> int:
    stmt = _in_vms(ctx, func.count(func.distinct(Vm.user_id)))
    return _count(ctx, stmt.where(VmRuntime.user_state == "connected"))


def _expiring(ctx: Ctx) -> list[dict[str, Any]]:
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


_STATS: dict[str, tuple[str, Callable[[Ctx], Any]]] = {
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
}


def statistics(ctx: Ctx) -> dict[str, Any]:
    """Every statistic the caller's ACLs allow."""
    return {name: fn(ctx) for name, (acl, fn) in _STATS.items() if ctx.principal.can(acl)}


def _handler(ctx: Ctx, req: ActionRequest) -> ActionResult:
    return ActionResult(rows=[statistics(ctx)], total=1)


ACTIONS = (
    Action(name="qvd_objects_statistics", qvd_object=None, type_of_action="see",
           acls=(r"^[a-z]+\.stats\.",), handler=_handler),
)  # fmt: skip
