"""The WAT's pages, one module per area; :data:`ROUTERS` is what ``install`` mounts.

``nav`` gives every template the menu and the tenant choice."""

from __future__ import annotations

from fastapi import APIRouter

from qvd.wat.pages import (
    administrators,
    configs,
    dashboard,
    dis,
    hosts,
    login,
    logs,
    nav,
    osfs,
    properties,
    roles,
    sessions,
    tenants,
    users,
    vms,
)

__all__ = ["ROUTERS", "nav"]

ROUTERS: tuple[APIRouter, ...] = (
    login.router,
    dashboard.router,
    vms.router,
    users.router,
    hosts.router,
    osfs.router,
    dis.router,
    administrators.router,
    roles.router,
    tenants.router,
    properties.router,
    configs.router,
    logs.router,
    sessions.router,
)
