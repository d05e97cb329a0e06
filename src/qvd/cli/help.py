"""Help texts for ``qa``, ``qa <object> --help``, ``qa <object> <verb> --help`` and
the session commands (``usage login`` …)."""

from __future__ import annotations

from qvd.cli.commands import DEFAULT_COLUMNS
from qvd.cli.grammar import VERBS_OF

__all__ = ["OBJECT_HELP", "SESSION_HELP", "VERBS_OF", "VERB_HELP", "help_text"]

USAGE = """usage: qa [options] <object> [<filters>] <verb> [<arguments>] [order [asc|desc] f1, f2]
       qa [options] [shell]        interactive: one command per line, one API session
       qa [options] password|usage [<command>]|version

Objects: vm user host osf di tenant config admin role acl log property policy session
Verbs:   get new set del block unblock start stop disconnect tag untag assign unassign
         can default ssl
Filters: k=v  k!=v  k<v  k>v  k<=v  k>=v  k~%pat%  k=[a,b]  k=[a:b]
         ',' and   ';' or   '!' not   ( ) grouping   a bare word is name=<word>
Session: login [<name> [<tenant>]]  logout  password  block [<page size>]  usage [<command>]
         version  quit (or exit, or end of input)

Options:
  -u, --url URL         the API (qa.url; default https://127.0.0.1:8444/)
  -l, --login NAME      administrator (qa.login)
  -p, --password PASS   password (qa.password; or $QA_PASSWORD; asked on a terminal)
  -t, --tenant NAME     tenant of the administrator ('*' for superadmins; qa.tenant)
  -f, --format FMT      table (default), csv or json (qa.format)
  --ca FILE             trust this CA or certificate file (qa.ca)
  --insecure            do not check the API's certificate (qa.insecure)
  --force               do not ask before deleting or changing every object (qa.force)
  -h, --help            this help; 'qa <object> --help', 'qa <object> <verb> --help'

'del', and a change without filters (it acts on every object: 'qa vm stop'), ask
first ("Delete 12 VMs? [y/N]"); without a terminal to ask on they need --force.

Configuration: ~/.config/qvd/qa.conf (or $QA_CONFIG) with qa.url = …, qa.login = …
Exit status: 0 on success, 1 when the API refused or failed (or a confirmation was
declined), 2 on a usage error. A piped session exits with the last failure's status.

Examples:
  qa vm get
  qa vm name=desk1 start
  qa vm "state=running, user~%ana%" get name, host order desc name
  qa user new name=ana, password=secret, tenant_id=10000
  qa di new disk_image=./desk.tar.gz, osf_id=10000
  qa di osf_id=10000, version=2024-01-01-000 tag default
  qa config ssl cert=api.pem, key=api-key.pem
  qa -f csv user get
  printf 'vm get\\nuser get\\n' | qa
"""

OBJECT_HELP = {
    "vm": "virtual desktops: new name=…, user=<name>|user_id=…, osf=<name>|osf_id=…[, di_tag=…]",
    "user": "users who connect: new name=…, password=…[, tenant_id=… for superadmins]",
    "host": "nodes (superadmins): new name=…, address=…",
    "osf": "OS flavours: new name=…[, memory=MB, user_storage=MB, tenant_id=…]",
    "di": "disk images: new disk_image=<local file or staged name>, osf_id=…[, version=…,"
    " tags=[a,b], di_type=upload|staging]",
    "tenant": "tenants (superadmins): new name=…",
    "config": "configuration tokens: set key=…, value=…[, tenant_id=…]; key=… default;"
    " ssl cert=<file>, key=<file>",
    "admin": "administrators: new name=…, password=…, roles=[…]; assign role <names>",
    "role": "roles: new name=…, acls=[…], roles=[…]; assign acl|role <names>; can [pattern]",
    "acl": "ACL names (read only)",
    "log": "the audit log (read only)",
    "session": "the session history: logins, connects, takeovers (read only; user=,"
    " vm=, host=, kind=, result=, started_at>=…; --csv)",
    "property": "custom property keys: new key=…, objects=[vm,user]; assign vm, user",
    "policy": "policies the leader node applies: new name=…, kind=idle_stop|idle_suspend|"
    'max_session|scheduled_start|scheduled_stop|warm_pool[, minutes=…, at="HH:MM"|at_minute=…,'
    " weekdays=[mon,tue,…], timezone=Europe/Madrid, size=…, osf_id=…, enabled=0|1]",
}

VERB_HELP = {
    "get": "get [field, …] [order [asc|desc] field, …]: list matching objects",
    "new": "new k=v, …: create one object",
    "set": "set k=v, …: change every matching object (all of them without filters: asks)",
    "del": "del: delete every matching object (asks first, unless --force)",
    "default": "default: reset the matching configuration tokens to their defaults"
    " (all of them without filters: asks)",
    "ssl": "ssl cert=<file>, key=<file>[, ca=<file>, crl=<file>]: install the API's"
    " certificate (the local PEM files' contents are sent)",
    "block": "block: block every matching object",
    "unblock": "unblock: unblock every matching object",
    "start": "start: start the matching VMs (a node is chosen by the load balancer)",
    "stop": "stop: stop the matching VMs",
    "disconnect": "disconnect: disconnect the users of the matching VMs",
    "tag": "tag t1, t2: move these tags to the matching DI",
    "untag": "untag t1, t2: remove these tags (head, default and versions cannot be removed)",
    "assign": "assign role|acl name, …: give roles (admins, roles) or ACLs (roles);"
    " property: assign vm, user, host, osf, di",
    "unassign": "unassign role|acl name, …: take them away (an inherited ACL is denied);"
    " property: unassign vm, …",
    "can": "can [pattern]: the effective ACLs, '*' as wildcard (admin without filters: yours)",
}

SESSION_HELP = {
    "login": "login [<name> [<tenant>]]: log in as another administrator (asks for what is"
    " missing; the password hidden)",
    "logout": "logout: end the API session; the next command asks for the password again",
    "password": "password: change your own password (asked twice, hidden)",
    "block": "block [<n>]: show or set how many rows 'get' shows per page (default 25)",
    "usage": "usage [<object> [<verb>] | <command>]: help",
    "help": "help [<object> [<verb>] | <command>]: help",
    "version": "version: the versions of qa and of the API",
    "quit": "quit (or exit, or end of input): leave the interactive mode",
    "exit": "exit: leave the interactive mode",
    "shell": "shell: the interactive mode (also 'qa' with no command)",
}


def help_text(obj: str | None = None, verb: str | None = None) -> str:
    if obj in SESSION_HELP and obj not in VERBS_OF:
        return f"{SESSION_HELP[obj]}\n"
    if obj is None or obj not in VERBS_OF:
        return USAGE
    if verb is not None and verb in VERBS_OF[obj]:
        return f"qa {obj} [<filters>] {VERB_HELP[verb]}\n"
    lines = [f"qa {obj}: {OBJECT_HELP[obj]}", "", "Verbs:"]
    lines += [f"  {VERB_HELP[v]}" for v in VERBS_OF[obj]]
    lines += ["", f"Default columns: {' '.join(DEFAULT_COLUMNS[obj])}"]
    return "\n".join(lines) + "\n"
