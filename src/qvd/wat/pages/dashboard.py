"""The dashboard: counts of VMs, users, nodes and DIs (``qvd_objects_statistics``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from qvd.wat.port import WatError
from qvd.wat.web import ReadPage, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

STATS = (
    ("vms_count", "Virtual machines"),
    ("running_vms_count", "Running VMs"),
    ("blocked_vms_count", "Blocked VMs"),
    ("users_count", "Users"),
    ("connected_users_count", "Connected users"),
    ("blocked_users_count", "Blocked users"),
    ("hosts_count", "Nodes"),
    ("running_hosts_count", "Running nodes"),
    ("osfs_count", "OS flavours"),
    ("dis_count", "Disk images"),
)


@router.get("/")
def dashboard(page: ReadPage) -> Response:
    stats: dict[str, Any] = {}
    try:
        answer = page.call("qvd_objects_statistics", filters=page.tenant_filter() or None)
        stats = answer.rows[0] if answer.rows else {}
    except WatError as exc:
        page.flash("error", exc.message)
    return render(page, "dashboard.html", {"stats": stats, "stats_labels": STATS})
