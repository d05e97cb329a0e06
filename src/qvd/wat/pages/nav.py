"""The menu (what this administrator may see) and the superadmin's tenant choice,
available to every template as ``menu(page)`` and ``tenants(page)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qvd.wat.port import WatError
from qvd.wat.web import Page, templates

__all__ = ["MENU", "MenuItem", "menu", "tenants"]


@dataclass(frozen=True, slots=True)
class MenuItem:
    path: str
    label: str
    acl: str | None  # a regular expression over the ACL names; None: always
    superadmin: bool = False


MENU: tuple[MenuItem, ...] = (
    MenuItem("/", "Dashboard", None),
    MenuItem("/vms", "Virtual machines", "vm.see-main."),
    MenuItem("/users", "Users", "user.see-main."),
    MenuItem("/hosts", "Nodes", "host.see-main."),
    MenuItem("/osfs", "OS flavours", "osf.see-main."),
    MenuItem("/dis", "Disk images", "di.see-main."),
    MenuItem("/administrators", "Administrators", "administrator.see-main."),
    MenuItem("/roles", "Roles", "role.see-main."),
    MenuItem("/tenants", "Tenants", "tenant.see-main.", superadmin=True),
    MenuItem("/properties", "Properties", "property.see-main."),
    MenuItem("/configs", "Configuration", "config.qvd."),
    MenuItem("/logs", "Audit log", "log.see-main."),
    MenuItem("/sessions", "Session history", "session.see"),
)


def _holds(page: Page, prefix: str) -> bool:
    return any(acl.startswith(prefix) for acl in page.acls)


def menu(page: Page) -> list[MenuItem]:
    """The menu entries this administrator may open."""
    return [
        m for m in MENU
        if (m.acl is None or _holds(page, m.acl)) and (not m.superadmin or page.superadmin)
    ]  # fmt: skip


def tenants(page: Page) -> list[dict[str, Any]]:
    """Tenants a superadmin can choose to see (``id``, ``name``)."""
    try:
        answer = page.call("tenant_tiny_list", order_by=[("name", False)])
    except WatError:
        return []
    return [r for r in answer.rows if isinstance(r.get("id"), int) and r["id"] > 0]


templates.globals["menu"] = menu
templates.globals["tenants"] = tenants
