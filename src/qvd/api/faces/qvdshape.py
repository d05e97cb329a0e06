"""QVD's per-action result shapes, for the action face (``POST /api``, ``/api/ws``) only.

The services answer in one face-neutral form (real JSON types, lists of names,
seconds); the REST face ``/api/v1`` shows that form as it is. QVD's own clients (the
WAT, ``qa4``) read other shapes, which :func:`run` makes around
:func:`qvd.api.actions.dispatch.run_action`:

- ``<obj>_get_list`` / ``_get_details`` of administrators: ``roles`` is an object
  ``{"<id>": "<name>"}``; of roles: ``roles`` (inherited) is ``{"<id>": {"id", "name"}}``
  and ``acls`` is ``{"positive": [...], "negative": [...]}`` (role rows carry ``acls``
  by default, as QVD's do);
- DIs: ``tags`` is a comma-separated string in lists (``"2024-01-01-000,head"``: the
  WAT calls string methods on it, qa4 prints it as is) and a list of
  ``{"id", "tag", "fixed"}`` in ``di_get_details``;
- VMs: ``time_until_expiration_soft`` / ``_hard`` are ``{"months", "days", "hours",
  "minutes", "seconds", "expired"}`` (calendar months first), null without expiration;
- logs: ``arguments`` is the JSON text of the call's arguments;
- ``get_acls_in_roles`` / ``_admins``: one row per ACL, ``roles`` the
  ``{"<id>": "<name>"}`` it is held through; ``acl_name`` as a bare value is a LIKE
  pattern and ``operative`` is accepted (these lists only hold what is in effect);
- ``<obj>_get_property_list`` / ``_create_…`` / ``_delete_…``: ``id`` (filter, rows'
  field, created id) is the property's id, not the assignment's: the WAT's properties
  screen sends ``property_get_list``'s ``property_id`` there;
- ``config_get``: a bare ``key`` filter is a part of the token names (QVD's search);
- ``<obj>_all_ids``: ``rows`` is a flat list of ids; ``config_preffix_get``: a flat
  list of token prefixes;
- ``qvd_objects_statistics``: every statistic also at the top level, with each
  ``vms_with_expiration_date`` entry's ``remaining_time`` broken down as above;
- ``number_of_acls_in_role`` / ``_admin``: ``{"<pattern>": {"total", "effective"}}`` at
  the top level, for the first id asked about (QVD takes one).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qvd.api.actions.core import ActionRequest, ActionResult
from qvd.api.actions.dispatch import Runner, run_action
from qvd.api.actions.listing import ListSpec, visible_fields
from qvd.api.actions.principal import Principal
from qvd.api.services import administrators, dis, roles

__all__ = ["remaining_time", "run", "shape"]

_LIST_VERBS = ("_get_list", "_get_details")
_BODY_KEYS = frozenset({"status", "message", "total", "rows", "sid", "failures"})

# action → {QVD field: service field}; asked for under the service's name, shown
# under QVD's
_SUBSTITUTES: dict[str, dict[str, str]] = {
    "administrator_get_list": {"roles": "role_map"},
    "administrator_get_details": {"roles": "role_map"},
    "role_get_list": {"roles": "role_map", "acls": "acl_map"},
    "role_get_details": {"roles": "role_map", "acls": "acl_map"},
    "di_get_details": {"tags": "tag_objects"},
}
_SPECS: dict[str, ListSpec] = {
    "administrator": administrators.SPEC,
    "role": roles.SPEC,
    "di": dis.SPEC,
}
# fields QVD shows by default that the service keeps out of its default set
_QVD_DEFAULTS: dict[str, tuple[str, ...]] = {"role": ("acls",)}


@dataclass(slots=True)
class _Plan:
    """What :func:`_prepare` changed in the request, to be undone in the answer."""

    renames: dict[str, str] = field(default_factory=dict)  # service field → QVD field
    order: list[str] = field(default_factory=list)  # QVD field order, when known


def _object(action: str) -> str:
    for verb in _LIST_VERBS:
        if action.endswith(verb):
            return action.removesuffix(verb)
    return ""


_ACLS_IN = ("get_acls_in_roles", "get_acls_in_admins")
_PROPERTY_LISTS = ("_get_property_list", "_delete_property_list")


def _acl_filters(filters: Any) -> Any:
    """``get_acls_in_*`` filters as QVD takes them: ``acl_name`` given as a bare value is a
    LIKE pattern, ``operative`` (only what is held) is what these lists always are."""
    if not isinstance(filters, dict):
        return filters
    out = {k: v for k, v in filters.items() if k != "operative"}
    if isinstance(out.get("acl_name"), str):
        out["acl_name"] = {"~": out["acl_name"]}
    return out


def _prepare(req: ActionRequest, principal: Principal) -> _Plan:
    """Ask the service for the fields QVD's shapes are made from."""
    if req.action in _ACLS_IN:
        req.filters = _acl_filters(req.filters)
    if req.action == "config_get" and isinstance(req.filters, dict):
        key = req.filters.get("key")
        if isinstance(key, str):  # QVD: a bare key is looked for inside the token names
            escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            req.filters = {**req.filters, "key": {"~": f"%{escaped}%"}}
    if req.action.endswith(_PROPERTY_LISTS) and isinstance(req.filters, dict):
        # the WAT's properties screen names the property by its id
        req.filters = {("property_id" if k == "id" else k): v for k, v in req.filters.items()}
    substitutes = _SUBSTITUTES.get(req.action)
    plan = _Plan()
    if not substitutes:
        return plan
    obj = _object(req.action)
    fields = list(req.fields)
    if not fields:
        spec = _SPECS[obj]
        fields = visible_fields(spec, principal)
        for extra in _QVD_DEFAULTS.get(obj, ()):
            see = spec.fields[substitutes[extra]].see
            if extra not in fields and (see is None or principal.can(see)):
                fields.append(extra)
    plan.order = fields
    asked: list[str] = []
    for name in fields:
        target = substitutes.get(name, name)
        if target != name:
            plan.renames[target] = name
        asked.append(target)
    req.fields = asked
    return plan


def _add_months(when: dt.datetime, months: int) -> dt.datetime:
    year, month = divmod(when.month - 1 + months, 12)
    year += when.year
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


def remaining_time(seconds: int | None, now: dt.datetime | None = None) -> dict[str, int] | None:
    """``seconds`` from ``now`` as QVD's ``{months, days, hours, minutes, seconds,
    expired}`` (calendar months, then the rest); None stays None."""
    if seconds is None:
        return None
    if seconds <= 0:
        return {"months": 0, "days": 0, "hours": 0, "minutes": 0, "seconds": 0, "expired": 1}
    start = now or dt.datetime.now(dt.UTC)
    end = start + dt.timedelta(seconds=seconds)
    months = (end.year - start.year) * 12 + end.month - start.month
    while months > 0 and _add_months(start, months) > end:
        months -= 1
    rest = end - _add_months(start, months)
    hours, left = divmod(rest.seconds, 3600)
    minutes, secs = divmod(left, 60)
    return {
        "months": months,
        "days": rest.days,
        "hours": hours,
        "minutes": minutes,
        "seconds": secs,
        "expired": 0,
    }


def _row(row: Any, plan: _Plan) -> Any:
    if not isinstance(row, dict) or not plan.renames:
        return row
    renamed = {plan.renames.get(k, k): v for k, v in row.items()}
    return {k: renamed[k] for k in plan.order if k in renamed} | renamed


def _vm_row(row: dict[str, Any]) -> None:
    for key in ("time_until_expiration_soft", "time_until_expiration_hard"):
        if key in row:
            row[key] = remaining_time(row[key])


def _di_list_row(row: dict[str, Any]) -> None:
    if isinstance(row.get("tags"), list):
        row["tags"] = ",".join(str(t) for t in row["tags"])


def _log_row(row: dict[str, Any]) -> None:
    if isinstance(row.get("arguments"), dict | list):
        row["arguments"] = json.dumps(row["arguments"], sort_keys=True)


_ROW_SHAPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "vm_get_list": _vm_row,
    "vm_get_details": _vm_row,
    "di_get_list": _di_list_row,
    "log_get_list": _log_row,
    "log_get_details": _log_row,
}


def _acls_by_acl(req: ActionRequest, result: ActionResult) -> None:
    """One row per ACL (the service has one per role or administrator and ACL), with the
    roles it comes through merged; the owner's id is left out unless asked for."""
    if not result.rows or not all(isinstance(r, dict) and "id" in r for r in result.rows):
        return
    owner = "role_id" if req.action == "get_acls_in_roles" else "admin_id"
    merged: dict[Any, dict[str, Any]] = {}
    for row in result.rows:
        kept = merged.get(row["id"])
        if kept is None:
            kept = merged[row["id"]] = dict(row)
            if owner not in req.fields:
                kept.pop(owner, None)
        elif isinstance(row.get("roles"), dict) and isinstance(kept.get("roles"), dict):
            kept["roles"] = kept["roles"] | row["roles"]
    if result.total == len(result.rows):
        result.total = len(merged)
    result.rows = list(merged.values())


def _statistics(result: ActionResult) -> None:
    stats = result.rows[0] if result.rows and isinstance(result.rows[0], dict) else {}
    for vm in stats.get("vms_with_expiration_date") or []:
        if isinstance(vm, dict) and isinstance(vm.get("remaining_time"), int):
            vm["remaining_time"] = remaining_time(vm["remaining_time"])
    result.extra.update(stats)


def _acl_counts(result: ActionResult) -> None:
    first: Any = None
    for row in result.rows:
        owner = row.get("role_id", row.get("admin_id"))
        if first is None:
            first = owner
        if owner == first and row["acl_pattern"] not in _BODY_KEYS:
            counts = {"total": row["total"], "effective": row["effective"]}
            result.extra[row["acl_pattern"]] = counts


def shape(req: ActionRequest, result: ActionResult, plan: _Plan | None = None) -> ActionResult:
    """``result`` of ``req`` in QVD's shape (in place; also returned)."""
    action = req.action
    if plan is not None and plan.renames:
        result.rows = [_row(r, plan) for r in result.rows]
    shaper = _ROW_SHAPERS.get(action)
    if shaper is not None:
        for row in result.rows:
            if isinstance(row, dict):
                shaper(row)
    if action.endswith("_create_property_list") and isinstance(req.arguments, dict):
        prop = req.arguments.get("property_id")
        if result.rows and isinstance(prop, int | str) and str(prop).isdigit():
            result.rows = [{"id": int(prop)}]
    if action.endswith("_get_property_list"):
        for row in result.rows:
            if isinstance(row, dict) and "id" in row and "property_id" in row:
                row["id"] = row["property_id"]
    if action.endswith("_all_ids"):
        result.rows = [r["id"] if isinstance(r, dict) else r for r in result.rows]
    elif action == "config_preffix_get":
        result.rows = [r["prefix"] if isinstance(r, dict) else r for r in result.rows]
    elif action in _ACLS_IN:
        _acls_by_acl(req, result)
    elif action == "qvd_objects_statistics":
        _statistics(result)
    elif action in ("number_of_acls_in_role", "number_of_acls_in_admin"):
        _acl_counts(result)
    return result


def run(runner: Runner, principal: Principal, req: ActionRequest) -> ActionResult:
    """:func:`run_action` with QVD's request fields and result shapes."""
    plan = _prepare(req, principal)
    return shape(req, run_action(runner, principal, req), plan)
