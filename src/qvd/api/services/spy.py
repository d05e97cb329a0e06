"""Spy: a ticket for an administrator to shadow one running VM in the browser.

``vm_spy`` (exec, ACL ``vm.spy.``; ``interactive: true`` also needs
``vm.spy.interactive``) takes a filter that selects exactly one VM in the caller's
scope (another tenant's VM is not found), refuses a VM that is not running (5150), and
answers one row ``{ticket, url, expires}``: a one-time ticket valid 60 seconds
(:mod:`qvd.db.spytickets`; only its SHA-256 is stored) and the address of the user
portal on the VM's node, to which the browser POSTs it. Whether the user's X session
can be shown (connected or suspended) only the VM knows: the portal answers that.

The dispatcher's audit row records the call (``vm_spy``, its arguments: only
``interactive``); the ticket is in the answer only, never in the audit log.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from sqlalchemy import select

from qvd.api.actions.core import Action, ActionRequest, ActionResult, Args, Ctx, selected_ids
from qvd.api.errors import Forbidden, InvalidRequest, StateError, Status
from qvd.api.services.vms import SPEC
from qvd.db.models import Host, Vm, VmRuntime
from qvd.db.spytickets import issue

__all__ = ["ACTIONS", "portal_url"]


def portal_url(host_address: str, port: int) -> str:
    """``https://<host>:<port>/spy`` (an IPv6 address in brackets)."""
    try:
        literal = ipaddress.ip_address(host_address)
    except ValueError:
        literal = None
    host = f"[{host_address}]" if isinstance(literal, ipaddress.IPv6Address) else host_address
    return f"https://{host}:{port}/spy"


def _spy(ctx: Ctx, req: ActionRequest) -> ActionResult:
    args = Args(req.arguments, "vm", ctx.principal)
    interactive = bool(args.take("interactive", bool))
    args.finish()
    if interactive and not ctx.principal.can("vm.spy.interactive"):
        raise Forbidden(
            "vm: an interactive spy ('interactive': true) needs the ACL 'vm.spy.interactive'",
            Status.FORBIDDEN_ARGUMENT,
        )
    ids = selected_ids(ctx, SPEC, req.filters)
    if len(ids) != 1:
        raise InvalidRequest(
            f"vm_spy: the filters select {len(ids)} VMs; select exactly one (by id)",
            Status.BAD_FILTER,
        )
    vm_id = ids[0]
    row = ctx.session.execute(
        select(Vm.name, VmRuntime.vm_state, VmRuntime.vm_cmd, Host.address)
        .join(VmRuntime, VmRuntime.vm_id == Vm.id)
        .outerjoin(Host, Host.id == VmRuntime.host_id)
        .where(Vm.id == vm_id)
    ).one()
    if row.vm_state != "running" or row.vm_cmd == "stop" or row.address is None:
        pending = f" (command {row.vm_cmd!r} pending)" if row.vm_cmd else ""
        raise StateError(
            f"VM {vm_id} is {row.vm_state}{pending}; only a running VM can be spied",
            Status.CANNOT_SPY,
        )
    ticket, expires = issue(
        ctx.session.connection(),
        vm_id=vm_id,
        administrator_id=ctx.principal.admin_id,
        administrator_name=ctx.principal.admin_name,
        tenant_id=ctx.principal.tenant_id,
        interactive=interactive,
        address=ctx.principal.address,
    )
    url = portal_url(str(row.address), ctx.config.get_int("l7r.portal.port"))
    return ActionResult(
        rows=[{"ticket": ticket, "url": url, "expires": expires.astimezone(dt.UTC).isoformat()}],
        affected=[(vm_id, str(row.name))],
    )


ACTIONS = (
    Action(name="vm_spy", qvd_object="vm", type_of_action="exec",
           acls=("vm.spy.",), handler=_spy),
)  # fmt: skip
