"""The REST face, one router module per resource, named by the noun."""

from __future__ import annotations

from fastapi import APIRouter

from qvd.api.faces.routes import (
    acls,
    administrators,
    configs,
    dis,
    hosts,
    logs,
    osfs,
    properties,
    roles,
    session_history,
    sessions,
    settings,
    statistics,
    tenants,
    users,
    views,
    vms,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    sessions.router,
    tenants.router,
    administrators.router,
    roles.router,
    acls.router,
    users.router,
    vms.router,
    hosts.router,
    osfs.router,
    dis.router,
    dis.tags_router,
    configs.router,
    settings.router,
    views.router,
    views.mine_router,
    properties.router,
    logs.router,
    session_history.router,
    statistics.router,
)
