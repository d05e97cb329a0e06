"""What each ``qa`` command asks the API: a :class:`Command` becomes one or two
actions. Filters go to the action as they are (no id look-up first), so that one
command is one request wherever QVD's contract allows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qvd.cli.client import ApiClient, ApiReply
from qvd.cli.grammar import Command, GrammarError

__all__ = ["ACTION_OBJECT", "DEFAULT_COLUMNS", "Outcome", "run_command"]

# fmt: off
ACTION_OBJECT = {
    "vm": "vm", "user": "user", "host": "host", "osf": "osf", "di": "di", "tenant": "tenant",
    "admin": "administrator", "role": "role", "acl": "acl", "log": "log", "property": "property",
    "config": "config",
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
    "log": ["time", "administrator_name", "action", "qvd_object", "object_name", "status"],
    "property": ["id", "key", "description"],
}
# fmt: on
_EXEC = {"start": "vm_start", "stop": "vm_stop", "disconnect": "vm_user_disconnect"}
_NEEDS_FILTERS = {
    "set",
    "del",
    "block",
    "unblock",
    "start",
    "stop",
    "disconnect",
    "tag",
    "untag",
    "assign",
    "unassign",
    "can",
}


@dataclass(slots=True, kw_only=True)
class Outcome:
    """The reply to show, and the columns to show it with."""

    reply: ApiReply
    columns: list[str] = field(default_factory=list)
    listing: bool = False


def _args(command: Command) -> dict[str, Any]:
    args = dict(command.arguments)
    if command.obj == "vm":
        for short in ("user", "osf"):
            if short in args and not str(args[short]).isdigit():
                continue
            if short in args:
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


def _get(client: ApiClient, command: Command, block: int) -> Outcome:
    obj = ACTION_OBJECT[command.obj]
    action = "config_get" if obj == "config" else f"{obj}_get_list"
    order = {"field": command.order, "order": "-desc" if command.descending else "-asc"}
    reply = client.action(
        action, filters=command.filters or {}, fields=command.fields, order_by=order, block=block
    )
    return Outcome(
        reply=reply, columns=command.fields or DEFAULT_COLUMNS[command.obj], listing=True
    )


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
    ids = client.action(f"{obj}_get_list", filters=command.filters, fields=["id"])
    if not ids.ok:
        return Outcome(reply=ids)
    key, action = (
        ("role_id", "get_acls_in_roles") if obj == "role" else ("admin_id", "get_acls_in_admins")
    )
    filters: dict[str, Any] = {key: [row["id"] for row in ids.rows]}
    if command.words:
        filters["name"] = {"~": command.words[0].replace("*", "%")}
    reply = client.action(
        action, filters=filters, fields=["name"], order_by={"field": ["name"], "order": "-asc"}
    )
    return Outcome(reply=reply, columns=["name"], listing=True)


def _property_assign(client: ApiClient, command: Command, assign: bool) -> Outcome:
    current = client.action("property_get_list", filters=command.filters, fields=["id", "objects"])
    if not current.ok:
        return Outcome(reply=current)
    for row in current.rows:
        objs = set(row.get("objects") or [])
        objs = objs | set(command.words) if assign else objs - set(command.words)
        reply = client.action(
            "property_update",
            filters={"id": row["id"]},
            arguments={"__property_assign__": sorted(objs)},
        )
        if not reply.ok:
            return Outcome(reply=reply)
    return Outcome(reply=ApiReply(status=0, message="Successful completion"))


def run_command(client: ApiClient, command: Command, *, block: int = 25) -> Outcome:
    """Send the requests of one command and return what to show."""
    obj = ACTION_OBJECT[command.obj]
    verb = command.verb
    if verb in _NEEDS_FILTERS and not command.filters and obj != "config":
        raise GrammarError(f"'{verb}' needs filters that say which {command.obj}s")
    if verb == "get":
        return _get(client, command, block)
    if verb == "new":
        args = _args(command)
        if obj == "config":
            return Outcome(reply=client.action("config_set", arguments=args))
        path = Path(str(args.get("disk_image", "")))
        if obj == "di" and args.get("di_type") in (None, "upload") and path.is_file():
            args.pop("di_type", None)
            args["disk_image"] = path.name
            return Outcome(reply=client.upload_di(path, args))
        args.pop("di_type", None)
        return Outcome(reply=client.action(f"{obj}_create", arguments=args))
    if verb == "set":
        if obj == "config":
            return Outcome(reply=client.action("config_set", arguments=_args(command)))
        return Outcome(
            reply=client.action(f"{obj}_update", filters=command.filters, arguments=_args(command))
        )
    if verb in ("del", "default"):
        return Outcome(reply=client.action(f"{obj}_delete", filters=command.filters))
    if verb in ("block", "unblock"):
        return Outcome(
            reply=client.action(
                f"{obj}_update",
                filters=command.filters,
                arguments={"blocked": 1 if verb == "block" else 0},
            )
        )
    if verb in _EXEC:
        if obj != "vm":
            raise GrammarError(f"'{verb}' is a vm verb")
        return Outcome(reply=client.action(_EXEC[verb], filters=command.filters))
    if verb in ("tag", "untag"):
        if obj != "di" or not command.words:
            raise GrammarError(f"'{verb}' is a di verb: di <filters> {verb} <tag>, …")
        changes = {"create" if verb == "tag" else "delete": command.words}
        return Outcome(
            reply=client.action(
                "di_update", filters=command.filters, arguments={"__tags_changes__": changes}
            )
        )
    if verb in ("assign", "unassign"):
        if obj == "property":
            return _property_assign(client, command, verb == "assign")
        if obj not in ("role", "administrator"):
            raise GrammarError(f"'{verb}' is a role, admin or property verb")
        return Outcome(
            reply=client.action(
                f"{obj}_update",
                filters=command.filters,
                arguments=_role_acl_changes(command, verb == "assign"),
            )
        )
    if verb == "can":
        if obj not in ("role", "administrator"):
            raise GrammarError("'can' is a role or admin verb")
        return _can(client, command)
    raise GrammarError(f"'{verb}' is not a verb of {command.obj}")
