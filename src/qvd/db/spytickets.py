"""Spy tickets: an administrator's one-time pass to shadow one VM from the browser.

The API's ``vm_spy`` issues a ticket (:func:`issue`): 32 random bytes, URL-safe, of
which the database keeps only the SHA-256, valid :data:`TICKET_SECONDS`. The WAT posts
it (a form field, never a URL) to the user portal's ``POST /spy``, which only looks at
it (:func:`inspect`); the page's WebSocket sends it as its first frame and
``/ws/spy`` uses it up (:func:`consume`: one ``UPDATE … RETURNING``, so of two
concurrent uses one wins). When the spy ends the portal records it
(:func:`record_spy_end`: an ``audit_log`` row ``vm_spy_end``, source ``PORTAL``).

The grant names its VM: a ticket opens that VM and no other, whoever presents it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, literal, select, update

from qvd.db.bootstrap import SUPERTENANT_ID
from qvd.db.models import AuditLog, Tenant, Vm, VmSpyTicket

__all__ = [
    "SPY_END_ACTION",
    "TICKET_BYTES",
    "TICKET_SECONDS",
    "SpyGrant",
    "TicketState",
    "consume",
    "inspect",
    "issue",
    "record_spy_end",
    "ticket_digest",
    "well_formed",
]

TICKET_BYTES = 32
TICKET_SECONDS = 60
_KEEP_EXPIRED = dt.timedelta(hours=1)  # expired rows still say "expired", then go
_TICKET = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)
SPY_END_ACTION = "vm_spy_end"


class TicketState(enum.Enum):
    """What a presented ticket is (the portal says so to the administrator)."""

    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"

    @property
    def reason(self) -> str:
        return _REASONS[self]


_REASONS = {
    TicketState.VALID: "the ticket is valid",
    TicketState.UNKNOWN: "this spy ticket is unknown: open the spy again from the WAT",
    TicketState.EXPIRED: "this spy ticket has expired (it is valid for "
    f"{TICKET_SECONDS} seconds): open the spy again from the WAT",
    TicketState.USED: "this spy ticket was already used (each opens one view): "
    "open the spy again from the WAT",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SpyGrant:
    """What a valid ticket allows: who spies which VM, and whether with input."""

    vm_id: int
    administrator_id: int
    administrator_name: str
    tenant_id: int
    interactive: bool


def well_formed(ticket: object) -> bool:
    """Whether ``ticket`` has the shape of a ticket (checked before any hashing)."""
    return isinstance(ticket, str) and _TICKET.fullmatch(ticket) is not None


def ticket_digest(ticket: str) -> str:
    """What the database keeps of a ticket: its SHA-256, in hex."""
    return hashlib.sha256(ticket.encode("ascii")).hexdigest()


def issue(
    conn: Connection,
    *,
    vm_id: int,
    administrator_id: int,
    administrator_name: str,
    tenant_id: int,
    interactive: bool,
    address: str | None,
) -> tuple[str, dt.datetime]:
    """A new ticket for ``vm_id`` and its expiration (the database's clock); only the
    digest is stored. Tickets expired long ago are dropped on the way."""
    conn.execute(delete(VmSpyTicket).where(VmSpyTicket.expiration < func.now() - _KEEP_EXPIRED))
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    expiration = conn.execute(
        insert(VmSpyTicket)
        .values(
            token_sha256=ticket_digest(ticket),
            vm_id=vm_id,
            administrator_id=administrator_id,
            administrator_name=administrator_name[:64],
            tenant_id=tenant_id,
            interactive=interactive,
            expiration=func.now() + dt.timedelta(seconds=TICKET_SECONDS),
            address=(address or None) and address[:45],
        )
        .returning(VmSpyTicket.expiration)
    ).scalar_one()
    return ticket, expiration


def _grant(row: Any) -> SpyGrant:
    return SpyGrant(
        vm_id=int(row.vm_id),
        administrator_id=int(row.administrator_id),
        administrator_name=str(row.administrator_name),
        tenant_id=int(row.tenant_id),
        interactive=bool(row.interactive),
    )


_GRANT_COLUMNS = (
    VmSpyTicket.vm_id,
    VmSpyTicket.administrator_id,
    VmSpyTicket.administrator_name,
    VmSpyTicket.tenant_id,
    VmSpyTicket.interactive,
)


def inspect(conn: Connection, ticket: object) -> tuple[TicketState, SpyGrant | None]:
    """What ``ticket`` is now, without using it (the grant only when valid)."""
    if not well_formed(ticket):
        return TicketState.UNKNOWN, None
    assert isinstance(ticket, str)
    row = conn.execute(
        select(
            *_GRANT_COLUMNS,
            VmSpyTicket.used_at.is_not(None).label("used"),
            (VmSpyTicket.expiration <= func.now()).label("expired"),
        ).where(VmSpyTicket.token_sha256 == ticket_digest(ticket))
    ).one_or_none()
    if row is None:
        return TicketState.UNKNOWN, None
    if row.used:
        return TicketState.USED, None
    if row.expired:
        return TicketState.EXPIRED, None
    return TicketState.VALID, _grant(row)


def consume(conn: Connection, ticket: object) -> tuple[TicketState, SpyGrant | None]:
    """Use ``ticket`` up: the grant when it was valid (and is now used), else why not.
    One statement, so two concurrent uses cannot both succeed."""
    if not well_formed(ticket):
        return TicketState.UNKNOWN, None
    assert isinstance(ticket, str)
    digest = ticket_digest(ticket)
    row = conn.execute(
        update(VmSpyTicket)
        .where(
            VmSpyTicket.token_sha256 == digest,
            VmSpyTicket.used_at.is_(None),
            VmSpyTicket.expiration > func.now(),
        )
        .values(used_at=func.now())
        .returning(*_GRANT_COLUMNS)
    ).one_or_none()
    if row is not None:
        return TicketState.VALID, _grant(row)
    state, _ = inspect(conn, ticket)
    return (TicketState.USED if state is TicketState.VALID else state), None


def record_spy_end(
    conn: Connection,
    grant: SpyGrant,
    *,
    seconds: int,
    address: str | None,
    status: int = 0,
    reason: str = "",
) -> None:
    """The audit row of a spy that ended: who, which VM, how long, with input or not
    (``status`` 0: it was shown; else the code of why not, and ``reason``)."""
    arguments: dict[str, Any] = {"seconds": max(0, seconds), "interactive": grant.interactive}
    if reason:
        arguments["reason"] = reason[:500]
    vm_name = select(Vm.name).where(Vm.id == grant.vm_id).scalar_subquery()
    tenant_name = select(Tenant.name).where(Tenant.id == grant.tenant_id).scalar_subquery()
    conn.execute(
        insert(AuditLog).values(
            administrator_id=grant.administrator_id,
            administrator_name=grant.administrator_name,
            tenant_id=grant.tenant_id,
            tenant_name=tenant_name,
            action=SPY_END_ACTION,
            type_of_action="exec",
            arguments=arguments,
            qvd_object="vm",
            object_id=grant.vm_id,
            object_name=vm_name,
            status=status,
            source="PORTAL",
            ip=(address or None) and address[:45],
            superadmin=literal(grant.tenant_id == SUPERTENANT_ID),
        )
    )
