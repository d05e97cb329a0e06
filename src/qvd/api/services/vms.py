"""VMs: list, create, update, delete, start, stop, disconnect the user.

Start and stop follow the rules of ``qvd.db.vmrules`` (shared with the L7R and the
portal): start assigns a host with the shared load balancer and sets ``vm_cmd``; stop
sets ``vm_cmd`` or takes back a start not claimed yet; disconnect sets ``user_cmd``.
The database triggers send the NOTIFY for each (QVD's API forgot it for disconnect).

Addresses are global: every VM of every tenant sits on the nodes' VM network, from
``vm.network.ip.start`` to the end of its ``vm.network.netmask``. An address given to
``vm_create`` or ``vm_update`` must be a free one of that range; any other (outside
the range, or held by any VM, whichever tenant it belongs to) gets one and the same
7200 answer, so a tenant administrator learns nothing of other tenants' VMs from it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from functools import cache
from typing import Any

from sqlalchemy import Integer, and_, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from qvd.api.actions.core import (
    Action,
    ActionRequest,
    ActionResult,
    Args,
    Ctx,
    checked_name,
    db_error,
    for_each,
)
from qvd.api.actions.listing import Field, ListSpec
from qvd.api.actions.principal import GLOBAL_TENANT_ID
from qvd.api.errors import Conflict, InvalidRequest, NotFound, StateError, Status
from qvd.api.services.common import (
    apply_properties,
    created_fields,
    crud_actions,
    in_scope,
    properties_field,
    property_args,
    qvd_list_actions,
    tenant_fields,
)
from qvd.config import TOKENS
from qvd.config.names import DI_TAG, VM_NAME
from qvd.db import vmrules
from qvd.db.loadbalancer import NoHostAvailable, Weights
from qvd.db.models import Config, Di, DiRuntime, DiTag, Host, Osf, User, Vm, VmRuntime
from qvd.db.vmaddress import free_vm_ip

__all__ = ["ACTIONS", "SPEC", "start_vm", "stop_vm"]

_tag = aliased(DiTag)
_published = aliased(DiRuntime)
_di = aliased(Di)
_di_use = aliased(Di)


@cache
def _base() -> Any:
    """FROM and JOINs of the list (built once; statements are immutable)."""
    return (
        select(literal(1))
        .select_from(Vm)
        .join(User, User.id == Vm.user_id)
        .join(Osf, Osf.id == Vm.osf_id)
        .join(VmRuntime, VmRuntime.vm_id == Vm.id)
        .outerjoin(Host, Host.id == VmRuntime.host_id)
        .outerjoin(_tag, and_(_tag.osf_id == Vm.osf_id, _tag.tag == Vm.di_tag))
        .outerjoin(
            _published, and_(_published.di_id == _tag.di_id, _published.state == "published")
        )
        .outerjoin(_di, _di.id == _published.di_id)
        .outerjoin(_di_use, _di_use.id == VmRuntime.current_di_id)
    )


def _seconds_until(when: Any) -> Any:
    """Whole seconds from now until ``when`` (negative once past; null without one)."""
    return func.floor(func.extract("epoch", when - func.now())).cast(Integer)


def _octet(n: int) -> Any:
    return func.lpad(func.to_hex(func.split_part(Vm.ip, ".", n).cast(Integer)), 2, "0")


_MAC_DEFAULT = next(t.default for t in TOKENS if t.name == "vm.network.mac.prefix")
_MAC_PREFIX = (
    select(Config.value)
    .where(Config.tenant_id == GLOBAL_TENANT_ID, Config.key == "vm.network.mac.prefix")
    .scalar_subquery()
)
_mac = (
    func.lower(func.coalesce(_MAC_PREFIX, _MAC_DEFAULT))
    + ":" + _octet(2) + ":" + _octet(3) + ":" + _octet(4)
)  # fmt: skip
"""The VM's MAC: ``vm.network.mac.prefix`` (the database's global value, else the
default) and the last three octets of its address, as the HKD makes it."""


def _f(expr: Any, kind: type = str, see: str | None = None, **kw: Any) -> Field:
    return Field(expr=expr, kind=kind, see=see, **kw)


_FIELDS: dict[str, Field] = {
    "id": _f(Vm.id, int, "vm.see.id"),
    "name": _f(Vm.name),
    "description": _f(Vm.description, see="vm.see.description"),
    "user_id": _f(Vm.user_id, int, "vm.see.user"),
    "user_name": _f(User.login, see="vm.see.user"),
    "osf_id": _f(Vm.osf_id, int, "vm.see.osf"),
    "osf_name": _f(Osf.name, see="vm.see.osf"),
    "di_tag": _f(Vm.di_tag, see="vm.see.di-tag"),
    "blocked": _f(VmRuntime.blocked, bool, "vm.see.block"),
    "expiration_soft": _f(VmRuntime.vm_expiration_soft, dt.datetime, "vm.see.expiration"),
    "expiration_hard": _f(VmRuntime.vm_expiration_hard, dt.datetime, "vm.see.expiration"),
    "time_until_expiration_soft": _f(
        _seconds_until(VmRuntime.vm_expiration_soft), int, "vm.see.expiration"
    ),
    "time_until_expiration_hard": _f(
        _seconds_until(VmRuntime.vm_expiration_hard), int, "vm.see.expiration"
    ),
    "state": _f(VmRuntime.vm_state, see="vm.see.state"),
    "vm_cmd": _f(VmRuntime.vm_cmd, see="vm.see.state"),
    "last_error": _f(VmRuntime.last_error, see="vm.see.state", default=False),
    "host_id": _f(VmRuntime.host_id, int, "vm.see.host"),
    "host_name": _f(Host.name, see="vm.see.host"),
    "di_id": _f(_di.id, int, "vm.see.di"),
    "di_name": _f(_di.path, see="vm.see.di"),
    "di_version": _f(_di.version, see="vm.see.di-version"),
    "user_state": _f(VmRuntime.user_state, see="vm.see.user-state"),
    "ip": _f(Vm.ip, see="vm.see.ip"),
    "ip_in_use": _f(VmRuntime.vm_address, see="vm.see.ip"),
    "next_boot_ip": _f(Vm.ip, see="vm.see.next-boot-ip"),
    "mac": _f(_mac, see="vm.see.mac"),
    "ssh_port": _f(VmRuntime.vm_ssh_port, int, "vm.see.port-ssh"),
    "vnc_port": _f(VmRuntime.vm_vnc_port, int, "vm.see.port-vnc"),
    "serial_port": _f(VmRuntime.vm_serial_port, int, "vm.see.port-serial"),
    "di_id_in_use": _f(_di_use.id, int, "vm.see.di"),
    "di_name_in_use": _f(_di_use.path, see="vm.see.di"),
    "di_version_in_use": _f(_di_use.version, see="vm.see.di-version"),
    "storage": _f(Vm.storage, default=False),
    "properties": properties_field("vm", Vm.id),
    **created_fields("vm", Vm),
    **tenant_fields(User.tenant_id),
}

SPEC = ListSpec(
    object="vm", fields=_FIELDS, base=_base, id_expr=Vm.id, scope=in_scope(User.tenant_id)
)


def _vm_range(ctx: Ctx) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Network]:
    start = ipaddress.IPv4Address(ctx.config.get("vm.network.ip.start"))
    mask = ctx.config.get("vm.network.netmask")
    return start, ipaddress.IPv4Network(f"{start}/{mask}", strict=False)


def _next_ip(ctx: Ctx) -> str:
    start, network = _vm_range(ctx)
    ip = free_vm_ip(ctx.session.connection(), str(start), ctx.config.get("vm.network.netmask"))
    if ip is None:
        raise Conflict(f"no free VM address left in {network} from {start}", Status.ALREADY_EXISTS)
    return ip


def _unavailable(ctx: Ctx, ip: str) -> Conflict:
    """The one refusal of an address that cannot be given, whatever the reason."""
    start, network = _vm_range(ctx)
    last = network.broadcast_address - 1
    return Conflict(
        f"vm: the address {ip} is not available: give a free address from {start} to {last}, "
        "or none to get the next free one",
        Status.ALREADY_EXISTS,
    )


def _ip_arg(ctx: Ctx, args: Args, vm: Vm | None, **kwargs: Any) -> str | None:
    """A usable address from the ``ip`` argument (see the module docstring); ``vm``
    may keep the address it has."""
    raw = args.text("ip", max_len=45, **kwargs)
    if raw is None:
        return None
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise InvalidRequest(f"vm: {raw!r} is not an IP address", 6320) from None
    if vm is not None and str(ip) == vm.ip:
        return vm.ip
    start, network = _vm_range(ctx)
    taken = select(Vm.id).where(Vm.ip == str(ip))
    if (
        not isinstance(ip, ipaddress.IPv4Address)
        or ip not in network
        or not start <= ip < network.broadcast_address
        or ctx.session.scalar(taken.limit(1)) is not None
    ):
        raise _unavailable(ctx, str(ip))
    return str(ip)


def _tag_arg(args: Args, **kwargs: Any) -> str | None:
    tag = args.text("di_tag", max_len=DI_TAG.max_len, **kwargs)
    return None if tag is None else checked_name("vm", "di_tag", tag, DI_TAG, Status.BAD_TAG)


def _flush(ctx: Ctx, ip: str | None) -> None:
    """Flush; an address claimed meanwhile by a concurrent request reads as the same
    refusal as one already taken."""
    try:
        with ctx.session.begin_nested():
            ctx.session.flush()
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if ip is not None and constraint == "uq_vms_ip":
            raise _unavailable(ctx, ip) from None
        raise db_error(exc, "vm") from None


def _lookup(ctx: Ctx, model: Any, name_col: Any, value_id: Any, value_name: Any, what: str) -> Any:
    stmt = select(model)
    if value_id is not None:
        stmt = stmt.where(model.id == value_id)
    elif value_name is not None:
        stmt = stmt.where(name_col == value_name)
    else:
        raise InvalidRequest(f"vm: give {what}_id (or {what} by name)", Status.MISSING_ARGUMENT)
    if not ctx.principal.superadmin:
        stmt = stmt.where(model.tenant_id == ctx.principal.tenant_id)
    found = list(ctx.session.scalars(stmt.limit(2)))
    label = value_id if value_id is not None else repr(value_name)
    if not found:
        raise NotFound(f"vm: there is no {what} {label}", Status.MISSING_REFERENCE_ARG)
    if len(found) > 1:
        raise InvalidRequest(
            f"vm: {what} {label} exists in several tenants: give {what}_id", Status.BAD_ARGUMENT
        )
    return found[0]


def _create(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "vm", ctx.principal)
    name = args.name(rule=VM_NAME, required=True)
    user = _lookup(ctx, User, User.login, args.take("user_id", int), args.take("user", str), "user")
    osf = _lookup(ctx, Osf, Osf.name, args.take("osf_id", int), args.take("osf", str), "osf")
    if user.tenant_id != osf.tenant_id:
        raise Conflict(
            f"vm: user {user.login!r} and OSF {osf.name!r} belong to different tenants",
            Status.TENANT_MISMATCH,
        )
    di_tag = _tag_arg(args, acl="vm.create.di-tag") or "default"
    ip = _ip_arg(ctx, args, None)
    description = args.text("description", max_len=32768, nullable=True)
    storage = args.text("storage", max_len=4096, nullable=True)
    props, _ = property_args(args, "vm", create=True)
    args.finish()
    vm = Vm(
        name=name,
        user_id=user.id,
        osf_id=osf.id,
        di_tag=di_tag,
        ip=ip or _next_ip(ctx),
        description=description,
        storage=storage,
        creation_admin_id=ctx.principal.admin_id,
    )
    ctx.session.add(vm)
    _flush(ctx, vm.ip)
    apply_properties(ctx.session, "vm", vm.id, user.tenant_id, props, [])
    return ActionResult(rows=[{"id": vm.id}], affected=[(vm.id, name)])


def _update(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(vm_id: int) -> str | None:
        args = Args(req.arguments, "vm", ctx.principal)
        vm = ctx.session.get_one(Vm, vm_id)
        rt = ctx.session.get_one(VmRuntime, vm_id)
        tenant = ctx.session.scalar(select(User.tenant_id).where(User.id == vm.user_id))
        if (name := args.name(rule=VM_NAME, acl="vm.update.name")) is not None:
            vm.name = name
        if (tag := _tag_arg(args, acl="vm.update.di-tag")) is not None:
            vm.di_tag = tag
        if args.has("description"):
            vm.description = args.text(
                "description", max_len=32768, acl="vm.update.description", nullable=True
            )
        if args.has("storage"):
            vm.storage = args.text("storage", max_len=4096, nullable=True)
        if args.has("ip"):
            vm.ip = _ip_arg(ctx, args, vm, nullable=True)
            _flush(ctx, vm.ip)
        if (blocked := args.take("blocked", bool, acl="vm.update.block")) is not None:
            rt.blocked = blocked
        for key, col in (("expiration_soft", "vm_expiration_soft"),
                         ("expiration_hard", "vm_expiration_hard")):  # fmt: skip
            if args.has(key):
                value = args.take(key, dt.datetime, acl="vm.update.expiration", nullable=True)
                setattr(rt, col, value)
        props, deleted = property_args(args, "vm", create=False)
        args.finish()
        apply_properties(ctx.session, "vm", vm_id, tenant, props, deleted)
        return vm.name

    return for_each(ctx, SPEC, req.filters, work)


def _delete(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(vm_id: int) -> str | None:
        vm = ctx.session.get_one(Vm, vm_id)
        rt = ctx.session.get_one(VmRuntime, vm_id, with_for_update=True)
        if rt.vm_state != "stopped" or rt.vm_cmd is not None:
            raise Conflict(
                f"VM {vm_id} is {rt.vm_state}; stop it before deleting it", Status.VM_RUNNING
            )
        ctx.session.delete(vm)
        return vm.name

    return for_each(ctx, SPEC, req.filters, work)


def start_vm(ctx: Ctx, vm_id: int) -> int:
    """Assign a host and ask it to start the VM (``qvd.db.vmrules``); returns the host id."""
    try:
        outcome = vmrules.start(ctx.session, vm_id, Weights.from_config(ctx.config))
    except NoHostAvailable as exc:
        raise StateError(f"VM {vm_id}: {exc}", Status.NO_HOST) from None
    if outcome.host_id is None:  # anything but REQUEST: this request did nothing
        vm = outcome.vm
        pending = f" (command {vm.vm_cmd!r} pending)" if vm.vm_cmd else ""
        raise StateError(
            f"VM {vm_id} is {vm.vm_state}{pending}; only a stopped VM can be started",
            Status.CANNOT_START,
        )
    return outcome.host_id


def _start(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(vm_id: int) -> str | None:
        start_vm(ctx, vm_id)
        return None

    return for_each(ctx, SPEC, req.filters, work)


def stop_vm(ctx: Ctx, vm_id: int) -> None:
    """Ask the VM's node to stop it, or take back a start not claimed yet
    (``qvd.db.vmrules``); a stopped or stopping VM is refused."""
    decision, vm = vmrules.stop(ctx.session.connection(), vm_id)
    if decision in (vmrules.StopDecision.STOPPED, vmrules.StopDecision.STOPPING):
        raise StateError(
            f"VM {vm_id} is {vm.vm_state}; only a starting or running VM can be stopped",
            Status.CANNOT_STOP,
        )


def _stop(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(vm_id: int) -> str | None:
        stop_vm(ctx, vm_id)
        return None

    return for_each(ctx, SPEC, req.filters, work)


def _disconnect(ctx: Ctx, req: ActionRequest) -> ActionResult:
    def work(vm_id: int) -> str | None:
        rt = ctx.session.get_one(VmRuntime, vm_id, with_for_update=True)
        if rt.user_state not in ("connected", "connecting"):
            raise StateError(
                f"VM {vm_id}: its user is {rt.user_state}, nobody to disconnect",
                Status.CANNOT_DISCONNECT,
            )
        rt.user_cmd = "abort"
        return None

    return for_each(ctx, SPEC, req.filters, work)


ACTIONS = (
    *crud_actions(
        "vm", SPEC, see=("vm.see-main.", r"^[a-z]+\.see\.vm-list$"),
        create=_create, update=_update, delete=_delete,
    ),
    Action(name="vm_start", qvd_object="vm", type_of_action="exec",
           acls=("vm.update.state",), handler=_start),
    Action(name="vm_stop", qvd_object="vm", type_of_action="exec",
           acls=("vm.update.state", "host.update.stop-vms"), handler=_stop),
    Action(name="vm_user_disconnect", qvd_object="vm", type_of_action="exec",
           acls=("vm.update.disconnect-user",), handler=_disconnect),
    *qvd_list_actions("vm", SPEC, tiny=("vm.see-main.", r"^(host|osf)\.filter\.vm$")),
)  # fmt: skip
