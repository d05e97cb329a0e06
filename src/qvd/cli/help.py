"""Help texts for ``qa``, ``qa <object> --help`` and ``qa <object> <verb> --help``."""

from __future__ import annotations

from qvd.cli.commands import DEFAULT_COLUMNS

__all__ = ["OBJECT_HELP", "VERBS_OF", "VERB_HELP", "help_text"]

USAGE = """usage: qa [options] <object> [<filters>] <verb> [<arguments>] [order [asc|desc] f1, f2]

Objects: vm user host osf di tenant config admin role acl log property
Verbs:   get new set del block unblock start stop disconnect tag untag assign unassign
         can default
Filters: k=v  k!=v  k<v  k>v  k<=v  k>=v  k~%pat%  k=[a,b]  k=[a:b]
         ',' and   ';' or   '!' not   ( ) grouping   a bare word is name=<word>

Options:
  -u, --url URL         the API (qa.url; default https://127.0.0.1:8444/)
  -l, --login NAME      administrator (qa.login)
  -p, --password PASS   password (qa.password; or $QA_PASSWORD)
  -t, --tenant NAME     tenant of the administrator ('*' for superadmins; qa.tenant)
  -f, --format FMT      table (default), csv or json (qa.format)
  --ca FILE             trust this CA or certificate file (qa.ca)
  --insecure            do not check the API's certificate (qa.insecure)
  -h, --help            this help; 'qa <object> --help', 'qa <object> <verb> --help'

Configuration: ~/.config/qvd/qa.conf (or $QA_CONFIG) with qa.url = …, qa.login = …
Exit status: 0 on success, 1 when the API refused or failed, 2 on a usage error.

Examples:
  qa vm get
  qa vm name=desk1 start
  qa vm "state=running, user~%ana%" get name, host order desc name
  qa user new name=ana, password=secret, tenant_id=10000
  qa di osf_id=10000, version=2024-01-01-000 tag default
  qa -f csv user get
"""

VERBS_OF: dict[str, tuple[str, ...]] = {
    "vm": ("get", "new", "set", "del", "block", "unblock", "start", "stop", "disconnect"),
    "user": ("get", "new", "set", "del", "block", "unblock"),
    "host": ("get", "new", "set", "del", "block", "unblock"),
    "osf": ("get", "new", "set", "del"),
    "di": ("get", "new", "set", "del", "block", "unblock", "tag", "untag"),
    "tenant": ("get", "new", "set", "del", "block", "unblock"),
    "config": ("get", "set", "default"),
    "admin": ("get", "new", "set", "del", "assign", "unassign", "can"),
    "role": ("get", "new", "set", "del", "assign", "unassign", "can"),
    "acl": ("get",),
    "log": ("get",),
    "property": ("get", "new", "set", "del", "assign", "unassign"),
}

OBJECT_HELP = {
    "vm": "virtual desktops: new name=…, user=<name>|user_id=…, osf=<name>|osf_id=…[, di_tag=…]",
    "user": "users who connect: new name=…, password=…[, tenant_id=… for superadmins]",
    "host": "nodes (superadmins): new name=…, address=…",
    "osf": "OS flavours: new name=…[, memory=MB, user_storage=MB, tenant_id=…]",
    "di": "disk images: new disk_image=<local file or staged name>, osf_id=…[, version=…,"
    " tags=[a,b]]",
    "tenant": "tenants (superadmins): new name=…",
    "config": "configuration tokens: set key=…, value=…[, tenant_id=…]; key=… default",
    "admin": "administrators: new name=…, password=…, roles=[…]; assign role <names>",
    "role": "roles: new name=…, acls=[…], roles=[…]; assign acl|role <names>; can [pattern]",
    "acl": "ACL names (read only)",
    "log": "the audit log (read only)",
    "property": "custom property keys: new key=…, objects=[vm,user]; assign vm, user",
}

VERB_HELP = {
    "get": "get [field, …] [order [asc|desc] field, …]: list matching objects",
    "new": "new k=v, …: create one object",
    "set": "set k=v, …: change every matching object",
    "del": "del: delete every matching object",
    "default": "default: reset the matching configuration token to its default",
    "block": "block: block every matching object",
    "unblock": "unblock: unblock every matching object",
    "start": "start: start the matching VMs (a node is chosen by the load balancer)",
    "stop": "stop: stop the matching VMs",
    "disconnect": "disconnect: disconnect the users of the matching VMs",
    "tag": "tag t1, t2: move these tags to the matching DI",
    "untag": "untag t1, t2: remove these tags (head, default and versions cannot be removed)",
    "assign": "assign role|acl name, …: give roles (admins, roles) or ACLs (roles)",
    "unassign": "unassign role|acl name, …: take them away (an inherited ACL is denied)",
    "can": "can [pattern]: the effective ACLs, '*' as wildcard",
}


def help_text(obj: str | None = None, verb: str | None = None) -> str:
    if obj is None or obj not in VERBS_OF:
        return USAGE
    if verb is not None and verb in VERB_HELP:
        return f"qa {obj} [<filters>] {VERB_HELP[verb]}\n"
    lines = [f"qa {obj}: {OBJECT_HELP[obj]}", "", "Verbs:"]
    lines += [f"  {VERB_HELP[v]}" for v in VERBS_OF[obj]]
    lines += ["", f"Default columns: {' '.join(DEFAULT_COLUMNS[obj])}"]
    return "\n".join(lines) + "\n"
