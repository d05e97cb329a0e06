"""What each ``qa`` command asks the API: a :class:`Command` becomes one or a few
actions. Filters go to the action as they are (no id look-up first), so that one
command is one request wherever QVD's contract allows it.

Two kinds of command ask first (see :class:`Confirm`): ``del``, and a change without
filters, which acts on every object of its kind (``qa vm stop``). The question says
how many objects it would touch ("Delete 12 VMs?"); ``--force`` skips it, and without
a terminal to ask on the command is refused (:class:`Refused`). The API wants filters
on every change, so a confirmed change without filters names the ids it counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qvd.cli.client import ApiClient, ApiReply, ClientError
from qvd.cli.grammar import Command, GrammarError

__all__ = [
    "ACTION_OBJECT",
    "DEFAULT_COLUMNS",
    "Confirm",
    "Outcome",
    "Refused",
    "list_page",
    "plural",
    "run_command",
]

# fmt: off
ACTION_OBJECT = {
    "vm": "vm", "user": "user", "host": "host", "osf": "osf", "di": "di", "tenant": "tenant",
    "admin": "administrator", "role": "role", "acl": "acl", "log": "log", "property": "property",
    "config": "config", "policy": "policy", "session": "session",
}
DEFAULT_COLUMNS: dict[str, list[str]] = {
    "vm": ["id", "name", "blocked", "user_name", "host_name", "di_name", "ip", "ip_in_use",
           "di_name_in_use", "state", "user_state"],
    "user": ["id", "name", "blocked", "number_of_vms", "number_of_vms_connected"],
    "host": ["id", "name", "blocked", "address", "frontend", "backend", "state",
             "number_of_vms_connected"],
    "osf": ["id", "name", "overlay", "user_storage", "memory", "number_of_vms", "number_of_dis"],
    "di": ["id", "disk_image", "version", "osf_name", "blocked", "tags", "state"],
    "tenant": ["id", "name", "language", "block", "blocked"],
    "config": ["key", "operative_value", "default_value", "is_default"],
    "admin": ["id", "name", "language", "block"],
    "role": ["id", "name", "fixed", "internal"],
    "acl": ["id", "name"],
    "log": ["time", "administrator_name", "type_of_action", "qvd_object", "object_name",
            "status"],
    "property": ["id", "key", "description"],
    "policy": ["id", "name", "kind", "enabled", "osf_name", "minutes", "at_minute", "weekdays",
               "timezone", "size", "last_run_at"],
    "session": ["started_at", "kind", "result", "login", "vm_name", "host_name",
                "client_address", "transport", "duration", "end_reason"],
}
_NAMES = {
    "vm": ("VM", "VMs"), "user": ("user", "users"), "host": ("host", "hosts"),
    "osf": ("OSF", "OSFs"), "di": ("DI", "DIs"), "tenant": ("tenant", "tenants"),
    "admin": ("administrator", "administrators"), "role": ("role", "roles"),
    "acl": ("ACL", "ACLs"), "log": ("log entry", "log entries"),
    "property": ("property", "properties"),
    "config": ("configuration token", "configuration tokens"),
    "policy": ("policy", "policies"),
    "session": ("session history row", "session history rows"),
}
_QUESTIONS = {
    "del": "Delete {n}?", "set": "Change {n}?", "block": "Block {n}?", "unblock": "Unblock {n}?",
    "start": "Start {n}?", "stop": "Stop {n}?", "disconnect": "Disconnect the users of {n}?",
    "untag": "Remove these tags from {n}?", "assign": "Change the assignments of {n}?",
    "unassign": "Change the assignments of {n}?",
    "default": "Reset {n} to their default values?",
}
# fmt: on
_EXEC = {"start": "vm_start", "stop": "vm_stop", "disconnect": "vm_user_disconnect"}
_SSL_FILES = ("cert", "key", "ca", "crl")
_PAGE_MAX = 10000


class Refused(Exception):
    """The command was not run: its confirmation was declined or could not be asked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirm:
    """How to confirm: ``force`` says yes to everything; ``ask`` puts a yes/no
    question to the user (``None``: nobody to ask, so refuse)."""

    force: bool = False
    ask: Callable[[str], bool] | None = None


@dataclass(slots=True, kw_only=True)
class Outcome:
    """The reply to show, the columns to show it with and, for a listing, how to
    fetch its other pages (``more(page)``, pages counted from 1)."""

    reply: ApiReply
    columns: list[str] = field(default_factory=list)
    listing: bool = False
    block: int = 0
    more: Callable[[int], ApiReply] | None = None


def plural(obj: str, n: int) -> str:
    one, many = _NAMES[obj]
    return f"{n} {one if n == 1 else many}"


def _args(command: Command) -> dict[str, Any]:
    args = dict(command.arguments)
    if command.obj == "vm":
        for short in ("user", "osf"):
            if short in args and str(args[short]).isdigit():
                args[f"{short}_id"] = args.pop(short)
    if command.obj == "di" and isinstance(args.get("tags"), list | str):
        tags = args.pop("tags")
        args["__tags__"] = tags if isinstance(tags, list) else [tags]
    if command.obj == "property" and "objects" in args:
        objs = args.pop("objects")
        args["__property_assign__"] = objs if isinstance(objs, list) else [objs]
    for key in ("roles", "acls"):
        if key in args:
            value = args.pop(key)
            args[f"__{key}__"] = value if isinstance(value, list) else [value]
    return args


def _flat(filters: Any) -> Any:
    """``{"-and": [{a: …}, {b: …}]}`` as ``{a: …, b: …}`` when the fields differ: the
    config actions look for ``key`` and ``tenant_id`` at the top level."""
    parts = filters.get("-and") if isinstance(filters, dict) and len(filters) == 1 else None
    if not isinstance(parts, list):
        return filters
    flat: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or len(part) != 1:
            return filters
        ((key, value),) = part.items()
        if key.startswith("-") or key in flat:
            return filters
        flat[key] = value
    return flat


def _equalities(filters: Any) -> dict[str, Any] | None:
    """``{field: value}`` when the filters are only ``field=value`` joined by ``,``."""
    flat = _flat(filters)
    if not isinstance(flat, dict) or not flat:
        return None
    for key, cmp in flat.items():
        if key.startswith("-") or not isinstance(cmp, dict) or list(cmp) != ["="]:
            return None
    return {key: cmp["="] for key, cmp in flat.items()}


def _int_if_digits(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value


# listing ---------------------------------------------------------------------------------


def list_page(client: ApiClient, command: Command, block: int, page: int) -> ApiReply:
    """One page (from 1) of ``<object> … get``."""
    obj = ACTION_OBJECT[command.obj]
    action = "config_get" if obj == "config" else f"{obj}_get_list"
    filters = _flat(command.filters) if obj == "config" else command.filters
    order = {"field": command.order, "order": "-desc" if command.descending else "-asc"}
    if obj == "session" and not command.order:  # the history: newest first
        order = {"field": ["started_at", "id"], "order": "-desc"}
    return client.action(
        action,
        filters=filters or {},
        fields=command.fields,
        order_by=order,
        block=block,
        offset=page if page > 1 else None,
    )


def _get(client: ApiClient, command: Command, block: int) -> Outcome:
    return Outcome(
        reply=list_page(client, command, block, 1),
        columns=command.fields or DEFAULT_COLUMNS[command.obj],
        listing=True,
        block=block,
        more=lambda page: list_page(client, command, block, page),
    )


def _all_ids(client: ApiClient, obj: str, filters: Any) -> ApiReply:
    """Every id the filters select (``rows`` of ``{"id": …}``), page by page."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        reply = client.action(
            f"{obj}_get_list",
            filters=filters or {},
            fields=["id"],
            order_by={"field": ["id"], "order": "-asc"},
            block=_PAGE_MAX,
            offset=page if page > 1 else None,
        )
        if not reply.ok:
            return reply
        rows += reply.rows
        if len(reply.rows) < _PAGE_MAX or len(rows) >= (reply.total or 0):
            return ApiReply(status=0, total=len(rows), rows=rows)
        page += 1


# confirmation ----------------------------------------------------------------------------


def _ask(command: Command, confirm: Confirm, n: int) -> None:
    if confirm.force:
        return
    question = _QUESTIONS[command.verb].format(n=plural(command.obj, n))
    if confirm.ask is None or not confirm.ask(question):
        raise Refused("nothing done")


def _check_can_ask(command: Command, confirm: Confirm) -> None:
    if confirm.force or confirm.ask is not None:
        return
    what = f"'{command.obj} {command.verb}'"
    if not command.filters and command.verb != "del":
        what += f" without filters acts on every {_NAMES[command.obj][0]} and"
    raise Refused(
        f"{what} needs a confirmation, but standard input is not a terminal: "
        "add --force (or set qa.force = 1) to go ahead"
    )


def _targets(client: ApiClient, command: Command, confirm: Confirm) -> Any:
    """The filters to act with, once confirmed where needed; an :class:`Outcome` when
    there is nothing to act on."""
    filters = command.filters
    if filters and (command.verb != "del" or confirm.force):
        return filters
    _check_can_ask(command, confirm)
    obj = ACTION_OBJECT[command.obj]
    if filters:
        counted = client.action(f"{obj}_get_list", filters=filters, fields=["id"], block=1)
        if not counted.ok:
            return Outcome(reply=counted)
        n = counted.total if counted.total is not None else len(counted.rows)
    else:
        counted = _all_ids(client, obj, None)
        if not counted.ok:
            return Outcome(reply=counted)
        n = len(counted.rows)
        filters = {"id": [row["id"] for row in counted.rows]}
    if n == 0:
        return Outcome(reply=ApiReply(status=1300, message=f"no {_NAMES[command.obj][0]} matches"))
    _ask(command, confirm, n)
    return filters


# verbs -----------------------------------------------------------------------------------


def _role_acl_changes(command: Command, assign: bool) -> dict[str, Any]:
    if not command.words:
        raise GrammarError(f"{command.verb} needs 'role' or 'acl' and names")
    kind, names = command.words[0], command.words[1:]
    if kind not in ("role", "acl") or not names:
        raise GrammarError(f"{command.verb} role <names> | {command.verb} acl <names>")
    prefix = "assign" if assign else "unassign"
    if kind == "acl":
        if command.obj != "role":
            raise GrammarError("ACLs are assigned to roles; administrators get roles")
        return {"__acls_changes__": {f"{prefix}_acls": names}}
    return {"__roles_changes__": {f"{prefix}_roles": names}}


def _can(client: ApiClient, command: Command) -> Outcome:
    obj = ACTION_OBJECT[command.obj]
    if command.filters:
        ids = client.action(f"{obj}_get_list", filters=command.filters, fields=["id"])
        if not ids.ok:
            return Outcome(reply=ids)
        wanted = [row["id"] for row in ids.rows]
    elif obj == "administrator":  # no filters: the administrator logged in
        if not client.logged_in and not (login := client.login()).ok:
            return Outcome(reply=login)
        wanted = [client.me.get("admin_id")]
    else:
        raise GrammarError("'role can' needs filters that say which roles")
    key, action = (
        ("role_id", "get_acls_in_roles") if obj == "role" else ("admin_id", "get_acls_in_admins")
    )
    filters: dict[str, Any] = {key: wanted}
    if command.words:
        filters["name"] = {"~": command.words[0].replace("*", "%")}
    reply = client.action(
        action, filters=filters, fields=["name"], order_by={"field": ["name"], "order": "-asc"}
    )
    return Outcome(reply=reply, columns=["name"], listing=True)


def _property_assign(client: ApiClient, filters: Any, objects: list[str], assign: bool) -> Outcome:
    current = client.action("property_get_list", filters=filters, fields=["id", "objects"])
    if not current.ok:
        return Outcome(reply=current)
    for row in current.rows:
        objs = set(row.get("objects") or [])
        objs = objs | set(objects) if assign else objs - set(objects)
        reply = client.action(
            "property_update",
            filters={"id": row["id"]},
            arguments={"__property_assign__": sorted(objs)},
        )
        if not reply.ok:
            return Outcome(reply=reply)
    return Outcome(reply=ApiReply(status=0, message="Successful completion"))


def _new_di(client: ApiClient, args: dict[str, Any]) -> ApiReply:
    """A local file is uploaded; any other name is a file in the API server's staging
    folder (``di_type=staging``). QVD's container-image DIs (``di_type=docker``) ran on
    Kubernetes, a hypervisor this platform does not have."""
    di_type = str(args.pop("di_type", "") or "")
    if di_type == "docker":
        raise GrammarError(
            "di_type=docker: container-image DIs need QVD's Kubernetes hypervisor, which "
            "this platform does not have; give a disk image file (upload or staging)"
        )
    if di_type not in ("", "upload", "staging"):
        raise GrammarError(f"di_type is upload or staging, not {di_type!r}")
    if di_type == "staging":
        return client.create_di_from(di_type, args)
    image = str(args.get("disk_image") or "")
    path = Path(image).expanduser()
    if image and path.is_file():
        args["disk_image"] = path.name
        return client.upload_di(path, args)
    if di_type == "upload" or "/" in image:
        raise ClientError(f"{image or 'disk_image'}: no such local file to upload")
    return client.create_di_from("staging", args)


def _config_set(client: ApiClient, command: Command) -> Outcome:
    args = _args(command)
    given = _equalities(command.filters) if command.filters else {}
    if given is None or not set(given) <= {"key", "tenant_id"}:
        raise GrammarError("config … set: say key=<token>[, tenant_id=N] (before or after set)")
    for name, value in given.items():
        args.setdefault(name, value)
    if "tenant_id" in args:
        args["tenant_id"] = _int_if_digits(args["tenant_id"])
    return Outcome(reply=client.action("config_set", arguments=args))


def _config_default(client: ApiClient, command: Command, confirm: Confirm) -> Outcome:
    """``config key=k default`` resets one token; other filters (or none) reset every
    matching token that is not at its default, one ``config_delete`` each."""
    given = _equalities(command.filters) if command.filters else None
    if given and set(given) <= {"key", "tenant_id"} and "key" in given:
        filters = {k: _int_if_digits(v) if k == "tenant_id" else v for k, v in given.items()}
        return Outcome(reply=client.action("config_delete", filters=filters))
    if command.filters is None:
        _check_can_ask(command, confirm)
    filters = _flat(command.filters) or {}
    listed = client.action(
        "config_get", filters=filters, fields=["key", "is_default"], block=_PAGE_MAX
    )
    if not listed.ok:
        return Outcome(reply=listed)
    keys = [str(row["key"]) for row in listed.rows if not row.get("is_default")]
    if not keys:
        return Outcome(reply=ApiReply(status=0, message="every token already has its default"))
    if command.filters is None:
        _ask(command, confirm, len(keys))
    tenant = filters.get("tenant_id") if isinstance(filters, dict) else None
    failures: dict[str, dict[str, Any]] = {}
    for key in keys:
        one: dict[str, Any] = {"key": key}
        if tenant is not None:
            one["tenant_id"] = tenant
        reply = client.action("config_delete", filters=one)
        if not reply.ok:
            failures[key] = {"status": reply.status, "message": reply.message}
    if failures:
        message = f"not done for {len(failures)} of {len(keys)} tokens"
        return Outcome(reply=ApiReply(status=1200, message=message, failures=failures))
    return Outcome(reply=ApiReply(status=0, message=f"{plural('config', len(keys))} reset"))


def _read_pem(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise GrammarError(f"ssl {name}=<file>: one local file name")
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ClientError(f"ssl {name}={value}: cannot read it: {reason}") from None
    if "-----BEGIN " not in text:
        raise ClientError(f"ssl {name}={value}: not a PEM file (no '-----BEGIN' line)")
    return text


def _config_ssl(client: ApiClient, command: Command) -> Outcome:
    """``config ssl cert=<file>, key=<file>[, ca=<file>, crl=<file>]``: the local
    files' contents go to ``config_ssl``."""
    args = command.arguments
    unknown = sorted(set(args) - set(_SSL_FILES))
    if unknown:
        raise GrammarError(f"config ssl takes cert, key, ca and crl, not {', '.join(unknown)}")
    if "cert" not in args or "key" not in args:
        raise GrammarError("config ssl needs cert=<file> and key=<file> (ca, crl optional)")
    contents = {name: _read_pem(name, args[name]) for name in _SSL_FILES if name in args}
    return Outcome(reply=client.action("config_ssl", arguments=contents))


def _config(client: ApiClient, command: Command, confirm: Confirm) -> Outcome:
    if command.verb == "set":
        return _config_set(client, command)
    if command.verb == "default":
        return _config_default(client, command, confirm)
    return _config_ssl(client, command)


def run_command(
    client: ApiClient, command: Command, *, block: int = 25, confirm: Confirm | None = None
) -> Outcome:
    """Send the requests of one command and return what to show."""
    confirm = confirm or Confirm()
    obj = ACTION_OBJECT[command.obj]
    verb = command.verb
    if verb == "get":
        return _get(client, command, block)
    if obj == "config":
        return _config(client, command, confirm)
    if verb == "new":
        args = _args(command)
        if obj == "di":
            return Outcome(reply=_new_di(client, args))
        return Outcome(reply=client.action(f"{obj}_create", arguments=args))
    if verb == "can":
        return _can(client, command)
    if verb == "tag":
        if not command.filters or not command.words:
            raise GrammarError("tag: di <filters> tag <tag>, … (a tag names one DI per OSF)")
        changes = {"create": command.words}
        return Outcome(
            reply=client.action(
                "di_update", filters=command.filters, arguments={"__tags_changes__": changes}
            )
        )
    arguments: dict[str, Any] | None = None
    if verb == "set":
        arguments = _args(command)
        if not arguments:
            raise GrammarError("set needs k=v, … to change")
    elif verb in ("block", "unblock"):
        arguments = {"blocked": 1 if verb == "block" else 0}
    elif verb == "untag":
        if not command.words:
            raise GrammarError("untag: di <filters> untag <tag>, …")
        arguments = {"__tags_changes__": {"delete": command.words}}
    elif verb in ("assign", "unassign") and obj != "property":
        arguments = _role_acl_changes(command, verb == "assign")
    elif verb in ("assign", "unassign") and not command.words:
        raise GrammarError(f"property … {verb} vm, user, host, osf, di")
    targets = _targets(client, command, confirm)
    if isinstance(targets, Outcome):
        return targets
    if verb == "del":
        return Outcome(reply=client.action(f"{obj}_delete", filters=targets))
    if verb in _EXEC:
        return Outcome(reply=client.action(_EXEC[verb], filters=targets))
    if verb in ("assign", "unassign") and obj == "property":
        return _property_assign(client, targets, command.words, verb == "assign")
    return Outcome(reply=client.action(f"{obj}_update", filters=targets, arguments=arguments))
