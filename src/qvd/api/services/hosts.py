"""Hosts (nodes): global objects that only superadmins see (their ``host.*`` ACLs are
withheld from tenant administrators); a tenant administrator's ``host_tiny_list``
(the VM list's host filter) names only the hosts running its tenant's VMs.

``host_get_state`` answers the HKD state (``host_runtimes.state``: stopped, starting,
running, stopping, lost) of each host its filters select.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import func, literal, select

from qvd.api.actions.core import (
    Action,
    ActionRequest,
    ActionResult,
    Args,
    Ctx,
    for_each,
    selected_ids,
)
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import Principal
from qvd.api.errors import Conflict, InvalidRequest, Status
from qvd.api.services.common import (
    apply_properties,
    created_fields,
    crud_actions,
    properties_field,
    property_args,
    qvd_list_actions,
)
from qvd.api.services.vms import stop_vm
from qvd.config.names import HOST_NAME, NameRuleError, check_host_address
from qvd.db.models import Host, HostRuntime, User, Vm, VmRuntime

__all__ = ["ACTIONS", "SPEC"]

_vms_connected = (
    select(func.count())
    .select_from(VmRuntime)
    .where(VmRuntime.host_id == Host.id, VmRuntime.user_state == "connected")
    .correlate(Host)
    .scalar_subquery()
)
_vms_running = (
    select(func.count())
    .select_from(VmRuntime)
    .where(VmRuntime.host_id == Host.id, VmRuntime.vm_state != "stopped")
    .correlate(Host)
    .scalar_subquery()
)

_FIELDS: dict[str, Field] = {
    "id": Field(expr=Host.id, kind=int, see="host.see.id"),
    "name": Field(expr=Host.name),
    "description": Field(expr=Host.description, see="host.see.description"),
    "address": Field(expr=Host.address, see="host.see.address"),
    "blocked": Field(expr=HostRuntime.blocked, kind=bool, see="host.see.block"),
    "frontend": Field(expr=Host.frontend, kind=bool),
    "backend": Field(expr=Host.backend, kind=bool),
    "state": Field(expr=HostRuntime.state, see="host.see.state"),
    "ok_ts": Field(expr=HostRuntime.ok_ts, kind=str, see="host.see.state", filterable=False),
    "free_ram_mb": Field(expr=HostRuntime.free_ram_mb, kind=float, see="host.see.state"),
    "idle_cpu": Field(expr=HostRuntime.idle_cpu, kind=float, see="host.see.state"),
    "number_of_vms": Field(expr=_vms_running, kind=int, see="host.see.vms-info"),
    "number_of_vms_connected": Field(expr=_vms_connected, kind=int, see="host.see.vms-info"),
    "properties": properties_field("host", Host.id),
    **created_fields("host", Host),
}


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return select(literal(1)).select_from(Host).join(HostRuntime, HostRuntime.host_id == Host.id)


def _scope(p: Principal) -> Any:
    """Superadmins see every host; a tenant administrator (who never holds a ``host.*``
    ACL, yet may reach ``host_tiny_list`` through ``vm.filter.host``) only the hosts
    running its tenant's VMs, as ``vm.see.host`` already shows it."""
    if p.superadmin:
        return None
    return Host.id.in_(
        select(VmRuntime.host_id)
        .join(Vm, Vm.id == VmRuntime.vm_id)
        .join(User, User.id == Vm.user_id)
        .where(User.tenant_id == p.tenant_id)
    )


SPEC = ListSpec(object="host", fields=_FIELDS, base=_base, id_expr=Host.id, scope=_scope)


def _address(value: str | None) -> str:
    try:
        return check_host_address(value)
    except NameRuleError as exc:
        raise InvalidRequest(f"host: 'address': {exc}", Status.BAD_ARGUMENT_VALUE) from None


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "host", ctx.principal)
    name = args.name(rule=HOST_NAME, required=True)
    address = _address(args.text("address", max_len=127, required=True))
    frontend = args.take("frontend", bool)
    backend = args.take("backend", bool)
    blocked = args.take("blocked", bool)
    description = args.text("description", max_len=32768, nullable=True)
    props, _ = property_args(args, "host", create=True)
    args.finish()
    host = Host(
        name=name,
        address=address,
        frontend=True if frontend is None else frontend,
        backend=True if backend is None else backend,
        description=description,
        creation_admin_id=ctx.principal.admin_id,
    )
    ctx.session.add(host)
    ctx.session.flush()
    if blocked:
        ctx.session.get_one(HostRuntime, host.id).blocked = True
    apply_properties(ctx.session, "host", host.id, None, props, [])
    return ActionResult(rows=[{"id": host.id}], affected=[(host.id, name)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(host_id: int) -> str | None:
        args = Args(req.arguments, "host", ctx.principal)
        host = ctx.session.get_one(Host, host_id)
        rt = ctx.session.get_one(HostRuntime, host_id)
        if (name := args.name(rule=HOST_NAME, acl="host.update.name")) is not None:
            host.name = name
        if (address := args.text("address", max_len=127, acl="host.update.address")) is not None:
            host.address = _address(address)
        if (blocked := args.take("blocked", bool, acl="host.update.block")) is not None:
            rt.blocked = blocked
        for flag in ("frontend", "backend"):
            if (value := args.take(flag, bool)) is not None:
                setattr(host, flag, value)
        if args.has("description"):
            host.description = args.text(
                "description", max_len=32768, acl="host.update.description", nullable=True
            )
        props, deleted = property_args(args, "host", create=False)
        args.finish()
        apply_properties(ctx.session, "host", host_id, None, props, deleted)
        return host.name

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(host_id: int) -> str | None:
        host = ctx.session.get_one(Host, host_id)
        rt = ctx.session.get_one(HostRuntime, host_id)
        if rt.state not in ("stopped", "lost"):
            raise Conflict(
                f"host {host.name!r} is {rt.state}; stop its HKD before deleting it",
                Status.HOST_RUNNING,
            )
        ctx.session.delete(host)
        return host.name

    return for_each(ctx, SPEC, req.filters, work)


def _stop_vms(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(host_id: int) -> str | None:
        host = ctx.session.get_one(Host, host_id)
        vm_ids = ctx.session.scalars(
            select(VmRuntime.vm_id).where(
                VmRuntime.host_id == host_id,
                VmRuntime.vm_state.in_(("starting", "running", "zombie", "debugging")),
            )
        )
        for vm_id in vm_ids:
            stop_vm(ctx, vm_id)
        return host.name

    return for_each(ctx, SPEC, req.filters, work)


def _state(ctx: Ctx, req: ActionRequest) -> ActionResult:
    ids = selected_ids(ctx, SPEC, req.filters)
    states = dict(
        ctx.session.execute(
            select(HostRuntime.host_id, HostRuntime.state).where(HostRuntime.host_id.in_(ids))
        )
        .tuples()
        .all()
    )
    rows = [{"id": i, "state": states[i]} for i in ids]
    return ActionResult(rows=rows, total=len(rows))


ACTIONS = (
    *crud_actions(
        "host", SPEC, see=("host.see-main.",),
        create=_create, update=_update, delete=_delete,
    ),
    Action(name="host_stop_vms", qvd_object="host", type_of_action="exec",
           acls=("host.update.stop-vms",), handler=_stop_vms),
    Action(name="host_get_state", qvd_object="host", type_of_action="see",
           acls=("host.see.state", "host.see.vm-list-state"), handler=_state),
    *qvd_list_actions("host", SPEC, tiny=("host.see-main.", r"^vm\.filter\.host$")),
)  # fmt: skip
