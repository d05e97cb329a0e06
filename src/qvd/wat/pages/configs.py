"""The configuration editor: the database's configuration tokens, grouped by their first
name part, searchable; each with its default, the value the database sets and the value
in effect. A token's page edits it (``config_set``: the API checks the type and answers
why it refuses) or resets it to its default (``config_delete``).

Secret tokens (``qvd.config.tokens.is_secret``: passwords, keys, …) never reach the
page: their values show as "••••" and the edit form has an empty input to replace them.

Superadmins see the global layer (tenant -1) or, with ``?tenant=<id>``, one tenant's
overrides of the per-tenant tokens (the value in effect there is the tenant's, else the
global one, else the default). Tenant administrators see and set their own tenant's."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from qvd.config.tokens import find_family, is_secret, kind_of, lookup
from qvd.wat.pages.objectpages import refusal_page, refusal_status
from qvd.wat.port import WatError
from qvd.wat.web import MutatingPage, Page, ReadPage, render

__all__ = ["MASK", "TokenRow", "router"]

router = APIRouter(include_in_schema=False)

MASK = "••••"
GLOBAL = -1
MAX_SEARCH = 64
MAX_VALUE = 4096
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True, slots=True)
class TokenRow:
    """One token as the editor shows it (a secret's values already masked)."""

    key: str
    kind: str
    secret: bool
    default: str | None
    stored: str | None  # the value the database sets on the layer shown; None: none
    effective: str | None
    inherited: bool  # the value in effect comes from the global layer

    @property
    def prefix(self) -> str:
        return self.key.split(".", 1)[0]


def _masked(value: str | None, secret: bool) -> str | None:
    if value is None or not secret:
        return value
    return MASK if value != "" else ""


def _tenant_choice(page: Page, raw: str | None) -> int:
    """The layer shown: superadmins choose (``?tenant=<id>``, ``?tenant=`` for the global
    one; without it, the tenant chosen in the header, else global); others always see
    their own tenant's."""
    if not page.superadmin:
        return int(page.setup.get("tenant_id") or 0)
    if raw is None and page.tenant_choice is not None:
        return page.tenant_choice
    if raw and raw.isdigit() and len(raw) < 12:
        return int(raw)
    return GLOBAL


def _filters(page: Page, tenant_id: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(extra)
    if page.superadmin and tenant_id != GLOBAL:
        out["tenant_id"] = tenant_id
    return out


def _layer(page: Page, tenant_id: int, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    fields = ["key", "operative_value", "default_value", "is_default"]
    answer = page.call("config_get", filters=_filters(page, tenant_id, extra) or None,
                       fields=fields, order_by=[("key", False)])  # fmt: skip
    return answer.rows


def _token_rows(page: Page, tenant_id: int, extra: Mapping[str, Any]) -> list[TokenRow]:
    rows = _layer(page, tenant_id, extra)
    global_values: dict[str, str] = {}
    if page.superadmin and tenant_id != GLOBAL:
        global_values = {
            str(r["key"]): str(r["operative_value"])
            for r in _layer(page, GLOBAL, extra)
            if not r.get("is_default") and r.get("operative_value") is not None
        }
    out: list[TokenRow] = []
    for r in rows:
        key = str(r["key"])
        secret = is_secret(key)
        default = r.get("default_value")
        stored = None if r.get("is_default") else r.get("operative_value")
        inherited = stored is None and key in global_values
        effective = stored if stored is not None else global_values.get(key, default)
        kind = kind_of(key)
        out.append(
            TokenRow(
                key=key, kind=kind.name.lower() if kind else "string", secret=secret,
                default=_masked(default, secret), stored=_masked(stored, secret),
                effective=_masked(effective, secret), inherited=inherited,
            )
        )  # fmt: skip
    return out


def _groups(rows: list[TokenRow]) -> list[tuple[str, list[TokenRow]]]:
    groups: dict[str, list[TokenRow]] = {}
    for row in rows:
        groups.setdefault(row.prefix, []).append(row)
    return sorted(groups.items())


def _search_filters(q: str, prefix: str) -> dict[str, Any]:
    """``prefix`` (a first name part) as a ``key_re`` filter, ``q`` as a LIKE on the key."""
    out: dict[str, Any] = {}
    if prefix:
        out["key_re"] = "^" + re.escape(prefix) + r"\."
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out["key"] = {"~": f"%{escaped}%"}
    return out


def _query(tenant_id: int, page: Page, **more: str) -> str:
    values = {k: v for k, v in more.items() if v}
    if page.superadmin and tenant_id != GLOBAL:
        values["tenant"] = str(tenant_id)
    elif page.superadmin and page.tenant_choice is not None:
        values["tenant"] = ""  # the global layer, not the tenant chosen in the header
    return ("?" + urllib.parse.urlencode(values)) if values else ""


@router.get("/configs")
def configs(request: Request, page: ReadPage) -> Response:
    params = request.query_params
    tenant_id = _tenant_choice(page, params.get("tenant"))
    q = params.get("q", "")[:MAX_SEARCH].strip()
    prefix = params.get("prefix", "")[:MAX_SEARCH].strip()
    rows: list[TokenRow] = []
    prefixes: list[str] = []
    error = None
    try:
        rows = _token_rows(page, tenant_id, _search_filters(q, prefix))
        prefixes = [str(r["prefix"]) for r in page.call("config_preffix_get").rows]
    except WatError as exc:
        error = exc
    context = {
        "groups": _groups(rows), "total": len(rows), "q": q, "prefix": prefix,
        "prefixes": prefixes, "tenant_id": tenant_id, "error": error,
        "suffix": _query(tenant_id, page), "global_layer": tenant_id == GLOBAL,
    }  # fmt: skip
    return render(page, "configs/list.html", context,
                  status=refusal_status(error) if error else 200)  # fmt: skip


def _token_page(
    page: Page, key: str, tenant_id: int, *, typed: str | None = None, status: int = 200,
    saved: str = "",
) -> Response:  # fmt: skip
    if not _KEY.fullmatch(key):
        return _no_token(page, key)
    try:
        rows = _token_rows(page, tenant_id, {"key": key})
    except WatError as exc:
        return refusal_page(page, page.t("Configuration"), exc.message, refusal_status(exc))
    if not rows and lookup(key) is None and find_family(key) is None:
        return _no_token(page, key)
    kind = kind_of(key)
    row = rows[0] if rows else TokenRow(
        key=key, kind=kind.name.lower() if kind else "string", secret=is_secret(key),
        default=None, stored=None, effective=None, inherited=False,
    )  # fmt: skip
    token = lookup(key)
    family = find_family(key)
    doc = token.doc if token else family.doc if family else ""
    kind_text = kind.value if kind else "string"
    if saved == "1":
        page.flash("ok", page.t("Saved."))
    elif saved == "reset":
        page.flash("ok", page.t("Reset to its default."))
    value = "" if row.secret else (typed if typed is not None else (row.stored or ""))
    return render(
        page, "configs/token.html",
        {"row": row, "doc": doc, "kind_text": kind_text, "value": value,
         "tenant_id": tenant_id, "suffix": _query(tenant_id, page),
         "global_layer": tenant_id == GLOBAL},
        status=status,
    )  # fmt: skip


def _no_token(page: Page, key: str) -> Response:
    return refusal_page(
        page, page.t("No such configuration token"),
        page.t("There is no configuration token") + f" {key[:80]!r}.", 404,
    )  # fmt: skip


@router.get("/configs/{key}")
def token(request: Request, page: ReadPage, key: str) -> Response:
    tenant_id = _tenant_choice(page, request.query_params.get("tenant"))
    return _token_page(page, key, tenant_id, saved=request.query_params.get("saved", ""))


def _arguments(page: Page, key: str, tenant_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key}
    if page.superadmin and tenant_id != GLOBAL:
        out["tenant_id"] = tenant_id
    return out


@router.post("/configs/{key}")
def set_token(
    page: MutatingPage,
    key: str,
    value: Annotated[str, Form(max_length=MAX_VALUE)] = "",
    tenant: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """``config_set``: the API checks the token and its value's type."""
    tenant_id = _tenant_choice(page, tenant)
    if not _KEY.fullmatch(key):
        return _no_token(page, key)
    try:
        page.call("config_set", arguments={**_arguments(page, key, tenant_id), "value": value})
    except WatError as exc:
        page.flash("error", exc.message)
        typed = None if is_secret(key) else value  # a secret typed is never echoed back
        return _token_page(page, key, tenant_id, typed=typed, status=refusal_status(exc))
    url = f"/configs/{urllib.parse.quote(key)}" + _query(tenant_id, page, saved="1")
    return RedirectResponse(url, status_code=303)


@router.post("/configs/{key}/reset")
def reset_token(
    page: MutatingPage, key: str, tenant: Annotated[str, Form(max_length=12)] = ""
) -> Response:
    """``config_delete``: back to the default (the API says so when it already is)."""
    tenant_id = _tenant_choice(page, tenant)
    if not _KEY.fullmatch(key):
        return _no_token(page, key)
    filters: dict[str, Any] = {"key": key}
    if page.superadmin and tenant_id != GLOBAL:
        filters["tenant_id"] = tenant_id
    try:
        page.call("config_delete", filters=filters)
    except WatError as exc:
        page.flash("error", exc.message)
        return _token_page(page, key, tenant_id, status=refusal_status(exc))
    url = f"/configs/{urllib.parse.quote(key)}" + _query(tenant_id, page, saved="reset")
    return RedirectResponse(url, status_code=303)
