"""The dashboard (``/``): VMs by state, users, blocked objects, nodes, disk images,
recent errors and VMs close to expiry, each block only with the ACLs it needs and
within the superadmin's tenant choice.

Everything is read through the API's actions, so what a block shows is exactly what
``/api/ws`` re-runs: every live element carries its ``/api/ws`` query
(``data-dash-query``) and ``static/js/dashboard.js`` follows it.

- The **counters** are one ``qvd_objects_statistics`` call (``vms_by_state``,
  ``users_count``…; the API shows a statistic only with its ACL, so a counter shows
  when the answer has it): one socket for all of them, its pushes replace the numbers.
- A **panel** (the nodes table, the DIs by state, the recent errors, the VMs close to
  expiry) is rendered here; its socket watches the rows the panel is made of, and
  when they change the browser fetches the panel again (``GET /dashboard/panels/<name>``).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from qvd.wat.port import WatError
from qvd.wat.web import Page, ReadPage, render

__all__ = [
    "COUNTERS",
    "PANELS",
    "VM_STATES",
    "Counter",
    "Panel",
    "router",
    "statistics",
    "ws_query",
]

router = APIRouter(include_in_schema=False)

VM_STATES = ("stopped", "starting", "running", "stopping", "zombie", "debugging")
PANEL_ROWS = 8  # rows of the errors and expiry panels

# The English labels, listed for the translation catalogue (templates use them as data).
_STATE_LABELS = {
    "stopped": "Stopped", "starting": "Starting", "running": "Running",
    "stopping": "Stopping", "zombie": "Zombie", "debugging": "Debugging",
}  # fmt: skip


def ws_query(
    action: str,
    *,
    filters: Mapping[str, Any] | None = None,
    fields: Sequence[str] = ("id",),
    order_by: Sequence[tuple[str, bool]] = (),
    block: int | None = None,
) -> str:
    """The query string of ``/api/ws`` that runs ``action`` as the page did (QVD's
    request shape: JSON-encoded filters, fields and order; ``block`` rows of page 1)."""
    params: dict[str, str] = {"action": action}
    if fields:
        params["fields"] = json.dumps(list(fields))
    if filters:
        params["filters"] = json.dumps(dict(filters), separators=(",", ":"))
    if order_by:
        names = [name for name, _ in order_by]
        direction = "-desc" if order_by[0][1] else "-asc"
        params["order_by"] = json.dumps({"field": names, "order": direction})
    if block is not None:
        params["block"] = str(block)
        params["offset"] = "1"
    return urllib.parse.urlencode(params)


# ------------------------------------------------------------------ counters


@dataclass(frozen=True, slots=True)
class Counter:
    """A number of ``qvd_objects_statistics``: ``stat`` is its key, or ``key.sub`` for
    one entry of a mapping (``vms_by_state.running``)."""

    key: str
    label: str
    stat: str

    def value(self, stats: Mapping[str, Any]) -> int | None:
        """The number in ``stats`` (None when the answer does not have it: no ACL)."""
        name, _, sub = self.stat.partition(".")
        value = stats.get(name)
        if sub:
            value = value.get(sub) if isinstance(value, Mapping) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


COUNTERS: dict[str, tuple[Counter, ...]] = {
    "vms": (
        Counter("vms-total", "Total", "vms_count"),
        *(Counter(f"vms-{s}", _STATE_LABELS[s], f"vms_by_state.{s}") for s in VM_STATES),
    ),
    "users": (
        Counter("users-total", "Total", "users_count"),
        Counter("users-connected", "Connected", "connected_users_count"),
    ),
    "blocked": (
        Counter("blocked-vms", "Virtual machines", "blocked_vms_count"),
        Counter("blocked-users", "Users", "blocked_users_count"),
        Counter("blocked-hosts", "Nodes", "blocked_hosts_count"),
        Counter("blocked-dis", "Disk images", "blocked_dis_count"),
    ),
}
"""The counter blocks of the page, in order."""

COUNTER_TITLES = {"vms": "Virtual machines by state", "users": "Users",
                  "blocked": "Blocked objects"}  # fmt: skip


def statistics(page: Page) -> dict[str, Any]:
    """``qvd_objects_statistics`` within the tenant choice (empty if refused: the
    admin holds no ``stats`` ACL, say)."""
    try:
        answer = page.call("qvd_objects_statistics", filters=page.tenant_filter() or None)
    except WatError:
        return {}
    return answer.rows[0] if answer.rows else {}


def statistics_query(page: Page) -> str:
    return ws_query("qvd_objects_statistics", filters=page.tenant_filter(), fields=())


# ------------------------------------------------------------------ panels

_VM = ("vm.see-main.",)
_HOST = ("host.see-main.",)
_DI = ("di.see-main.",)


@dataclass(frozen=True, slots=True)
class Panel:
    """A block of rows rendered here (``dashboard/<name>.html``): ``load`` reads its
    context, ``watch`` is the ``/api/ws`` query whose result changes when it should be
    rendered again."""

    name: str
    title: str
    acls: tuple[str, ...]
    load: Callable[[Page], dict[str, Any]]
    watch: Callable[[Page], str]
    superadmin: bool = False

    def visible(self, page: Page) -> bool:
        return page.can(*self.acls) and (page.superadmin or not self.superadmin)


_NODE_FIELDS = (
    ("state", "host.see.state"), ("blocked", "host.see.block"),
    ("free_ram_mb", "host.see.state"), ("idle_cpu", "host.see.state"),
    ("number_of_vms", "host.see.vms-info"),
)  # fmt: skip


def _node_fields(page: Page) -> list[str]:
    return ["id", "name", *(name for name, acl in _NODE_FIELDS if page.can(acl))]


def _nodes(page: Page) -> dict[str, Any]:
    answer = page.call("host_get_list", fields=_node_fields(page), order_by=[("name", False)])
    rows = []
    for row in answer.rows:
        idle = row.get("idle_cpu")
        load = round((1 - float(idle)) * 100) if isinstance(idle, int | float) else None
        rows.append({**row, "load": load})
    states = collections.Counter(str(r.get("state") or "") for r in rows)
    return {"rows": rows, "states": sorted(states.items()), "fields": set(_node_fields(page))}


def _nodes_watch(page: Page) -> str:
    return ws_query("host_get_list", fields=_node_fields(page))


def _di_fields(page: Page) -> list[str]:
    return ["id", "state", *(["blocked"] if page.can("di.see.block") else [])]


def _dis(page: Page) -> dict[str, Any]:
    answer = page.call("di_get_list", filters=page.tenant_filter() or None, fields=_di_fields(page))
    states = collections.Counter(str(r.get("state") or "") for r in answer.rows)
    return {"total": len(answer.rows), "states": sorted(states.items())}


def _dis_watch(page: Page) -> str:
    return ws_query("di_get_list", filters=page.tenant_filter(), fields=_di_fields(page))


_ERROR_FILTER = {"status": {"!=": 0}}
_LOG_FIELDS = ["id", "time", "action", "qvd_object", "object_name", "status"]


def _errors(page: Page) -> dict[str, Any]:
    fields = [*_LOG_FIELDS, *(["admin_name"] if page.can("log.see.administrator") else [])]
    answer = page.call(
        "log_get_list", filters={**page.tenant_filter(), **_ERROR_FILTER}, fields=fields,
        order_by=[("time", True), ("id", True)], limit=PANEL_ROWS,
    )  # fmt: skip
    return {"rows": answer.rows, "total": answer.total or 0, "admin": "admin_name" in fields}


def _errors_watch(page: Page) -> str:
    return ws_query(
        "log_get_list", filters={**page.tenant_filter(), **_ERROR_FILTER},
        order_by=[("time", True), ("id", True)], block=PANEL_ROWS,
    )  # fmt: skip


_VM_ERROR_FILTER = {"last_error": {"!=": None}}


def _vm_errors(page: Page) -> dict[str, Any]:
    answer = page.call(
        "vm_get_list", filters={**page.tenant_filter(), **_VM_ERROR_FILTER},
        fields=["id", "name", "state", "last_error"], order_by=[("id", False)], limit=PANEL_ROWS,
    )  # fmt: skip
    return {"rows": answer.rows, "total": answer.total or 0}


def _vm_errors_watch(page: Page) -> str:
    return ws_query(
        "vm_get_list", filters={**page.tenant_filter(), **_VM_ERROR_FILTER},
        fields=["id", "last_error"], order_by=[("id", False)], block=PANEL_ROWS,
    )  # fmt: skip


def _expiry_filter(page: Page) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    return {**page.tenant_filter(), "expiration_hard": {">": now}}


def _expiring(page: Page) -> dict[str, Any]:
    answer = page.call(
        "vm_get_list", filters=_expiry_filter(page),
        fields=["id", "name", "expiration_hard", "time_until_expiration_hard"],
        order_by=[("expiration_hard", False), ("id", False)], limit=PANEL_ROWS,
    )  # fmt: skip
    rows = [{**r, "remaining": remaining(r.get("time_until_expiration_hard"))} for r in answer.rows]
    return {"rows": rows, "total": answer.total or 0}


def remaining(seconds: Any) -> str:
    """A time left, short: ``2 d 3 h``, ``5 h 10 min``, ``12 min`` (empty if unknown)."""
    if not isinstance(seconds, int) or seconds < 0:
        return ""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def _expiring_watch(page: Page) -> str:
    return ws_query(
        "vm_get_list", filters=_expiry_filter(page), fields=["id", "expiration_hard"],
        order_by=[("expiration_hard", False), ("id", False)], block=PANEL_ROWS,
    )  # fmt: skip


PANELS: dict[str, Panel] = {
    p.name: p
    for p in (
        Panel("nodes", "Nodes", _HOST, _nodes, _nodes_watch, superadmin=True),
        Panel("dis", "Disk images", (*_DI, "di.see.block"), _dis, _dis_watch),
        Panel("errors", "Recent errors", ("log.see-main.",), _errors, _errors_watch),
        Panel("vm-errors", "VMs with errors", (*_VM, "vm.see.state"), _vm_errors, _vm_errors_watch),
        Panel(
            "expiring", "Close to expiry", (*_VM, "vm.see.expiration"), _expiring, _expiring_watch
        ),
    )
}
"""The panels of the page, in order."""


def panel_context(page: Page, panel: Panel) -> dict[str, Any]:
    """What ``dashboard/<panel>.html`` shows (``error``: the API's refusal)."""
    try:
        return {"panel": panel, "data": panel.load(page), "error": None}
    except WatError as exc:
        return {"panel": panel, "data": {}, "error": exc.message}


# ------------------------------------------------------------------ routes


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="qvd-wat-dashboard")
"""The dashboard's reads run side by side (with 10,000 VMs each takes a while)."""


@router.get("/")
def dashboard(page: ReadPage) -> Response:
    panels = [p for p in PANELS.values() if p.visible(page)]
    contexts = [_POOL.submit(panel_context, page, p) for p in panels]
    stats = statistics(page)
    blocks = []
    for name, group in COUNTERS.items():
        shown = [(c, n) for c in group if (n := c.value(stats)) is not None]
        if shown:
            blocks.append({"name": name, "title": COUNTER_TITLES[name], "counters": shown})
    shown_panels = [
        {**future.result(), "query": p.watch(page)}
        for p, future in zip(panels, contexts, strict=True)
    ]
    return render(
        page,
        "dashboard.html",
        {"blocks": blocks, "panels": shown_panels, "stats_query": statistics_query(page)},
    )


@router.get("/dashboard/panels/{name}")
def dashboard_panel(name: str, page: ReadPage) -> Response:
    """One panel's rows again (the browser asks when its socket saw them change)."""
    panel = PANELS.get(name)
    if panel is None or not panel.visible(page):
        return render(page, "dashboard/missing.html", status=404)
    return render(page, "dashboard/panel.html", panel_context(page, panel))
