"""The ``qa`` grammar: a table of command lines and the requests they send (the API
is a recording MockTransport here)."""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest

from qvd import __version__
from qvd.cli import ApiClient, run
from qvd.cli.commands import Confirm, Refused, run_command
from qvd.cli.grammar import VERBS_OF, GrammarError, parse, tokenize

LOGIN = ["-u", "https://api.test/", "-l", "root", "-p", "pw", "-t", "*"]
ORDER_NONE = {"field": [], "order": "-asc"}


class Recorder:
    """A fake API that answers ``replies`` in turn and records every action body (the
    session id and ``parameters`` left out; ``_path`` added when not ``/api``)."""

    def __init__(self, replies: list[dict[str, Any]] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.replies = replies or []
        self.logins = 0
        self.logouts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/logout":
            self.logouts += 1
            return httpx.Response(200, json={"status": 0, "message": "Logged out"})
        if path == "/api/info":
            return httpx.Response(
                200,
                json={"status": 0, "multitenant": 1, "version": {"database": "abc123"},
                      "hypervisor": "lxc", "server_datetime": "2024-01-01T00:00:00+00:00"},
            )  # fmt: skip
        if request.headers.get("content-type", "").startswith("multipart/"):
            body: dict[str, Any] = {"multipart": True}
        else:
            body = json.loads(request.content) if request.content else {}
        if body.get("action") == "current_admin_setup":
            self.logins += 1
            row = {"sid": "S1", "admin_id": 3, "admin_name": "root"}
            return httpx.Response(200, json={"status": 0, "sid": "S1", "rows": [row]})
        entry = {k: v for k, v in body.items() if k not in ("sid", "parameters")}
        if path != "/api":
            entry["_path"] = path
        self.bodies.append(entry)
        reply = self.replies.pop(0) if self.replies else {"status": 0, "rows": [], "total": 0}
        return httpx.Response(200, json=reply)


def qa(
    line: str,
    recorder: Recorder | None = None,
    *,
    inp: str | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[int, str, str, Recorder]:
    rec = recorder or Recorder()
    out, err = io.StringIO(), io.StringIO()
    code = run(
        [*LOGIN, *shlex.split(line)],
        out=out,
        err=err,
        inp=io.StringIO(inp) if inp is not None else None,
        transport=httpx.MockTransport(rec),
        environ=environ or {"HOME": "/nonexistent"},
    )
    return code, out.getvalue(), err.getvalue(), rec


TABLE: list[tuple[str, dict[str, Any]]] = [
    ("vm get", {"action": "vm_get_list", "filters": {}, "fields": [], "order_by": ORDER_NONE,
                "block": 25}),
    ("vm name=myvm get name, id, ip",
     {"action": "vm_get_list", "filters": {"name": {"=": "myvm"}}, "fields": ["name", "id", "ip"],
      "order_by": ORDER_NONE, "block": 25}),
    ("vm get order desc name, id",
     {"action": "vm_get_list", "filters": {}, "fields": [],
      "order_by": {"field": ["name", "id"], "order": "-desc"}, "block": 25}),
    ("vm myvm get", {"action": "vm_get_list", "filters": {"name": {"=": "myvm"}}, "fields": [],
                     "order_by": ORDER_NONE, "block": 25}),
    ("vm 'state=running, user~%ana%' get host",
     {"action": "vm_get_list",
      "filters": {"-and": [{"state": {"=": "running"}}, {"user_name": {"~": "%ana%"}}]},
      "fields": ["host_name"], "order_by": ORDER_NONE, "block": 25}),
    ("vm 'id=[1,2,3]' stop", {"action": "vm_stop", "filters": {"id": {"=": ["1", "2", "3"]}}}),
    ("vm 'id=[10:20]' start", {"action": "vm_start", "filters": {"id": {">=": "10", "<=": "20"}}}),
    ("vm '(name=a;name=b),!blocked=1' disconnect",
     {"action": "vm_user_disconnect",
      "filters": {"-and": [{"-or": [{"name": {"=": "a"}}, {"name": {"=": "b"}}]},
                           {"-not": {"blocked": {"=": "1"}}}]}}),
    ("vm 'id>=5, id<9, name!=x' del --force",
     {"action": "vm_delete", "filters": {"-and": [{"id": {">=": "5"}}, {"id": {"<": "9"}},
                                                  {"name": {"!=": "x"}}]}}),
    ("vm name=myvm block", {"action": "vm_update", "filters": {"name": {"=": "myvm"}},
                            "arguments": {"blocked": 1}}),
    ("vm name=myvm set di_tag=default",
     {"action": "vm_update", "filters": {"name": {"=": "myvm"}},
      "arguments": {"di_tag": "default"}}),
    ("vm new name=myvm, user=alice, osf=myosf",
     {"action": "vm_create", "arguments": {"name": "myvm", "user": "alice", "osf": "myosf"}}),
    ("vm new name=v, user=10000, osf=10001",
     {"action": "vm_create", "arguments": {"name": "v", "user_id": "10000", "osf_id": "10001"}}),
    ("user new name=alice, password=secret",
     {"action": "user_create", "arguments": {"name": "alice", "password": "secret"}}),
    ("user name=alice unblock", {"action": "user_update", "filters": {"name": {"=": "alice"}},
                                 "arguments": {"blocked": 0}}),
    ("di osf_id=7 tag default, beta",
     {"action": "di_update", "filters": {"osf_id": {"=": "7"}},
      "arguments": {"__tags_changes__": {"create": ["default", "beta"]}}}),
    ("di id=9 untag beta", {"action": "di_update", "filters": {"id": {"=": "9"}},
                            "arguments": {"__tags_changes__": {"delete": ["beta"]}}}),
    ("di new disk_image=x.tar.gz, osf_id=7, tags=[default,beta]",
     {"action": "di_create", "_path": "/api/di/staging",
      "arguments": {"disk_image": "x.tar.gz", "osf_id": "7", "__tags__": ["default", "beta"]}}),
    ("di new di_type=staging, disk_image=x.tar.gz, osf_id=7",
     {"action": "di_create", "_path": "/api/di/staging",
      "arguments": {"disk_image": "x.tar.gz", "osf_id": "7"}}),
    ("di name=x get", {"action": "di_get_list", "filters": {"disk_image": {"=": "x"}},
                       "fields": [], "order_by": ORDER_NONE, "block": 25}),
    ("role name=ops assign acl vm.see.ip, vm.see.mac",
     {"action": "role_update", "filters": {"name": {"=": "ops"}},
      "arguments": {"__acls_changes__": {"assign_acls": ["vm.see.ip", "vm.see.mac"]}}}),
    ("admin name=ana unassign role Root",
     {"action": "administrator_update", "filters": {"name": {"=": "ana"}},
      "arguments": {"__roles_changes__": {"unassign_roles": ["Root"]}}}),
    ("admin new name=ana, password=x, roles=[Root]",
     {"action": "administrator_create",
      "arguments": {"name": "ana", "password": "x", "__roles__": ["Root"]}}),
    ("config get", {"action": "config_get", "filters": {}, "fields": [], "order_by": ORDER_NONE,
                    "block": 25}),
    ("config key~vm.network.% get key, value",
     {"action": "config_get", "filters": {"key": {"~": "vm.network.%"}},
      "fields": ["key", "operative_value"], "order_by": ORDER_NONE, "block": 25}),
    ("config set key=vm.network.ip.start, value=10.3.15.50",
     {"action": "config_set", "arguments": {"key": "vm.network.ip.start", "value": "10.3.15.50"}}),
    ("config key=l7r.auth.plugins default",
     {"action": "config_delete", "filters": {"key": "l7r.auth.plugins"}}),
    ("tenant new name=acme", {"action": "tenant_create", "arguments": {"name": "acme"}}),
    ('user new name=bob, description="a long one"',
     {"action": "user_create", "arguments": {"name": "bob", "description": "a long one"}}),
    ("host name=get get", {"action": "host_get_list", "filters": {"name": {"=": "get"}},
                           "fields": [], "order_by": ORDER_NONE, "block": 25}),
    # a word that is only another object's verb is a name (ssl is a config verb)
    ("vm ssl get", {"action": "vm_get_list", "filters": {"name": {"=": "ssl"}}, "fields": [],
                    "order_by": ORDER_NONE, "block": 25}),
    ("vm get order asc name", {"action": "vm_get_list", "filters": {}, "fields": [],
                               "order_by": {"field": ["name"], "order": "-asc"}, "block": 25}),
    ("vm 'state=running' get name, di_in_use, tenant order desc host, user",
     {"action": "vm_get_list", "filters": {"state": {"=": "running"}},
      "fields": ["name", "di_name_in_use", "tenant_name"],
      "order_by": {"field": ["host_name", "user_name"], "order": "-desc"}, "block": 25}),
    ("host 'ip_address~10.%' get ip_address",
     {"action": "host_get_list", "filters": {"address": {"~": "10.%"}}, "fields": ["address"],
      "order_by": ORDER_NONE, "block": 25}),
    ("log admin_name=root get admin, object",
     {"action": "log_get_list", "filters": {"administrator_name": {"=": "root"}},
      "fields": ["administrator_name", "qvd_object"], "order_by": ORDER_NONE, "block": 25}),
    ("acl 'name~vm.see.%' get", {"action": "acl_get_list", "filters": {"name": {"~": "vm.see.%"}},
                                 "fields": [], "order_by": ORDER_NONE, "block": 25}),
    ("property key=p1 get", {"action": "property_get_list", "filters": {"key": {"=": "p1"}},
                             "fields": [], "order_by": ORDER_NONE, "block": 25}),
    ("property new key=p1, objects=[vm,user]",
     {"action": "property_create", "arguments": {"key": "p1",
                                                 "__property_assign__": ["vm", "user"]}}),
    ("osf new name=o, memory=512, user_storage=0",
     {"action": "osf_create", "arguments": {"name": "o", "memory": "512", "user_storage": "0"}}),
    ("osf name=o set memory=1024", {"action": "osf_update", "filters": {"name": {"=": "o"}},
                                    "arguments": {"memory": "1024"}}),
    ("user name=x del --force", {"action": "user_delete", "filters": {"name": {"=": "x"}}}),
    ("--force host name=n1 del", {"action": "host_delete", "filters": {"name": {"=": "n1"}}}),
    ("tenant name=acme block", {"action": "tenant_update", "filters": {"name": {"=": "acme"}},
                                "arguments": {"blocked": 1}}),
    ("di id=9 unblock", {"action": "di_update", "filters": {"id": {"=": "9"}},
                         "arguments": {"blocked": 0}}),
    ("role name=ops unassign acl vm.see.ip",
     {"action": "role_update", "filters": {"name": {"=": "ops"}},
      "arguments": {"__acls_changes__": {"unassign_acls": ["vm.see.ip"]}}}),
    ("role name=ops assign role 'VMs Reader', 'Users Reader'",
     {"action": "role_update", "filters": {"name": {"=": "ops"}},
      "arguments": {"__roles_changes__": {"assign_roles": ["VMs Reader", "Users Reader"]}}}),
    ("admin name=ana assign role Root",
     {"action": "administrator_update", "filters": {"name": {"=": "ana"}},
      "arguments": {"__roles_changes__": {"assign_roles": ["Root"]}}}),
    ("admin id=3 set password=x", {"action": "administrator_update", "filters": {"id": {"=": "3"}},
                                   "arguments": {"password": "x"}}),
    ("config key=vm.network.ip.start set value=10.3.15.50",
     {"action": "config_set", "arguments": {"value": "10.3.15.50", "key": "vm.network.ip.start"}}),
    ("config set key=l7r.auth.plugins, value=auto, tenant_id=5",
     {"action": "config_set",
      "arguments": {"key": "l7r.auth.plugins", "value": "auto", "tenant_id": 5}}),
    ("config 'key=l7r.auth.plugins, tenant_id=5' default",
     {"action": "config_delete", "filters": {"key": "l7r.auth.plugins", "tenant_id": 5}}),
    ("config 'key~l7r.%, tenant_id=5' get key, value",
     {"action": "config_get", "filters": {"key": {"~": "l7r.%"}, "tenant_id": {"=": "5"}},
      "fields": ["key", "operative_value"], "order_by": ORDER_NONE, "block": 25}),
]  # fmt: skip


@pytest.mark.parametrize(("line", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_command_lines_become_requests(line: str, expected: dict[str, Any]) -> None:
    code, _out, err, rec = qa(line)
    assert code == 0, err
    assert rec.bodies == [expected]
    assert (rec.logins, rec.logouts) == (1, 1)  # one session, closed at the end


def test_can_looks_up_ids_then_acls() -> None:
    rec = Recorder(
        [
            {"status": 0, "rows": [{"id": 5}], "total": 1},
            {"status": 0, "rows": [{"name": "vm.see.ip"}], "total": 1},
        ]
    )
    code, out, _err, rec = qa("role name=ops can vm.see.*", rec)
    assert code == 0
    assert rec.bodies[1] == {
        "action": "get_acls_in_roles",
        "filters": {"role_id": [5], "name": {"~": "vm.see.%"}},
        "fields": ["name"],
        "order_by": {"field": ["name"], "order": "-asc"},
    }
    assert "vm.see.ip" in out


@pytest.mark.parametrize(
    "line",
    [
        "vm name=x",
        "vm name= get",
        "vm name=x get order",
        "nope get",
        "vm (name=x get",
        "user name=x start",
        "vm 'id=[1:2' get",
        "di tag default",
        "role can",
        "vm name=x set",
        "config ssl cert=a.pem",
        "config ssl cert=a.pem, key=b.pem, chain=c.pem",
        "config name~x set value=1",
        "di new disk_image=x, osf_id=1, di_type=ftp",
        "di new disk_image=debian12, osf_id=1, di_type=docker",
        "login",
        "block 50",
        "quit",
        "vm name=x ssl",
    ],
)
def test_usage_errors_exit_2(line: str) -> None:
    code, _out, err, rec = qa(line)
    assert code == 2
    assert err.startswith("qa: ")
    assert rec.bodies == []


def test_api_errors_exit_1_and_say_why() -> None:
    rec = Recorder(
        [
            {
                "status": 1200,
                "message": "failed for 1 of 1",
                "failures": {"7": {"status": 5130, "message": "VM 7 is running"}},
            }
        ]
    )
    code, _out, err, _ = qa("vm id=7 start", rec)
    assert code == 1
    assert "error 1200" in err
    assert "7: error 5130: VM 7 is running" in err


def test_tokens_keep_quoted_values_whole() -> None:
    assert [t.text for t in tokenize('name="a b", x~%y%')] == [
        "name",
        "=",
        "a b",
        ",",
        "x",
        "~",
        "%y%",
    ]
    with pytest.raises(GrammarError):
        parse("vm", ["name=x", "get", "extra=1"])


def test_help_for_everything() -> None:
    for line in ("--help", "vm --help", "vm get --help", "di tag -h", "config --help"):
        code, out, _err, _ = qa(line)
        assert code == 0, line
        assert out.startswith(("usage: qa", "qa ")), line
    code, out, _err, _ = qa("usage")
    assert code == 0
    assert out.startswith("usage: qa")


# What each verb takes, as the original qa's grammar has it (reference §qa grammar):
# its help line starts with this, then ": " and what it does.
VERB_SYNTAX = {
    "get": "get [field, …]", "new": "new k=v, …", "set": "set k=v, …", "del": "del",
    "default": "default", "ssl": "ssl cert=<file>, key=<file>", "block": "block",
    "unblock": "unblock", "start": "start", "stop": "stop", "disconnect": "disconnect",
    "tag": "tag t1, t2", "untag": "untag t1, t2", "assign": "assign role|acl name, …",
    "unassign": "unassign role|acl name, …", "can": "can [pattern]",
}  # fmt: skip


@pytest.mark.parametrize("obj", list(VERBS_OF))
def test_help_for_every_object_and_verb(obj: str) -> None:
    code, out, _err, rec = qa(f"{obj} --help")
    assert code == 0
    assert out.startswith(f"qa {obj}: ")
    for verb in VERBS_OF[obj]:
        code, out_verb, _err, _ = qa(f"{obj} {verb} --help")
        assert code == 0
        head, _, what = out_verb.partition(": ")
        assert head.startswith(f"qa {obj} [<filters>] {VERB_SYNTAX[verb]}"), out_verb
        assert len(what.strip()) > 10, out_verb  # it says what the verb does
        assert out_verb.endswith("\n")
        assert out_verb.count("\n") == 1
        assert out_verb.removeprefix(f"qa {obj} [<filters>] ").strip() in out
        _code, usage, _err, _ = qa(f"usage {obj} {verb}")
        assert usage == out_verb
    assert rec.bodies == []


@pytest.mark.parametrize("command", ["login", "logout", "password", "block", "version", "usage"])
def test_help_for_session_commands(command: str) -> None:
    code, out, _err, _ = qa(f"{command} --help")
    assert code == 0
    assert out.startswith(command)


def test_output_formats() -> None:
    reply = {
        "status": 0,
        "total": 2,
        "rows": [
            {"id": 1, "name": "a", "blocked": False},
            {"id": 2, "name": "b,c", "blocked": True},
        ],
    }
    _code, out, _e, _ = qa("-f csv user get id, name, blocked", Recorder([reply]))
    assert out == 'id,name,blocked\n1,a,0\n2,"b,c",1\n'
    _, out, _e, _ = qa("-f json user get", Recorder([dict(reply)]))
    assert json.loads(out)["rows"][1]["name"] == "b,c"
    _, out, _e, _ = qa("user get id, name", Recorder([dict(reply)]))
    assert "| 2  | b,c  |" in out
    assert out.endswith("Total: 2\n")


# confirmations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line", ["vm name=x del", "vm stop", "user block", "role unassign acl vm.see.ip", "di untag t"]
)
def test_without_a_terminal_asking_commands_are_refused(line: str) -> None:
    code, _out, err, rec = qa(line)
    assert code == 1
    assert "needs a confirmation" in err
    assert "--force" in err
    assert rec.bodies == []


def test_force_on_every_object_names_the_ids_counted() -> None:
    ids = {"status": 0, "total": 3, "rows": [{"id": 1}, {"id": 2}, {"id": 3}]}
    code, _out, err, rec = qa("--force vm stop", Recorder([ids]))
    assert code == 0, err
    assert rec.bodies == [
        {"action": "vm_get_list", "filters": {}, "fields": ["id"],
         "order_by": {"field": ["id"], "order": "-asc"}, "block": 10000},
        {"action": "vm_stop", "filters": {"id": [1, 2, 3]}},
    ]  # fmt: skip


def test_qa_force_in_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "qa.conf"
    conf.write_text("qa.force = 1\n")
    code, _out, err, rec = qa("vm name=x del", environ={"QA_CONFIG": str(conf)})
    assert code == 0, err
    assert rec.bodies == [{"action": "vm_delete", "filters": {"name": {"=": "x"}}}]


def _confirming(line: str, answer: bool, replies: list[dict[str, Any]]) -> tuple[Any, ...]:
    rec = Recorder(replies)
    client = ApiClient("https://api.test/", login="root", password="pw",
                       transport=httpx.MockTransport(rec))  # fmt: skip
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        return answer

    words = shlex.split(line)
    try:
        outcome = run_command(client, parse(words[0], words[1:]), confirm=Confirm(ask=ask))
    except Refused as exc:
        return asked, rec.bodies, str(exc)
    return asked, rec.bodies, outcome.reply.status


def test_del_counts_then_asks_then_deletes_with_the_filters() -> None:
    counted = {"status": 0, "total": 12, "rows": [{"id": 1}]}
    asked, bodies, status = _confirming("vm 'name~desk%' del", True, [counted])
    assert asked == ["Delete 12 VMs?"]
    assert bodies == [
        {"action": "vm_get_list", "filters": {"name": {"~": "desk%"}}, "fields": ["id"],
         "block": 1},
        {"action": "vm_delete", "filters": {"name": {"~": "desk%"}}},
    ]  # fmt: skip
    assert status == 0
    asked, bodies, status = _confirming("user name=ana del", False, [dict(counted, total=1)])
    assert asked == ["Delete 1 user?"]
    assert len(bodies) == 1
    assert status == "nothing done"


def test_nothing_to_confirm_when_nothing_matches() -> None:
    asked, bodies, status = _confirming("host block", True, [{"status": 0, "rows": []}])
    assert asked == []
    assert status == 1300
    assert len(bodies) == 1


@pytest.mark.parametrize(
    ("line", "question"),
    [
        ("vm start", "Start 2 VMs?"),
        ("vm disconnect", "Disconnect the users of 2 VMs?"),
        ("osf set memory=512", "Change 2 OSFs?"),
        ("property assign vm", "Change the assignments of 2 properties?"),
        ("admin del", "Delete 2 administrators?"),
    ],
)
def test_questions_say_what_and_how_many(line: str, question: str) -> None:
    ids = {"status": 0, "total": 2, "rows": [{"id": 1}, {"id": 2}]}
    asked, _bodies, _status = _confirming(line, False, [ids])
    assert asked == [question]


def test_config_default_without_filters_resets_every_changed_token() -> None:
    tokens = {
        "status": 0,
        "rows": [
            {"key": "a.b", "is_default": False},
            {"key": "c.d", "is_default": True},
            {"key": "e.f", "is_default": False},
        ],
    }
    asked, bodies, status = _confirming("config default", True, [tokens])
    assert asked == ["Reset 2 configuration tokens to their default values?"]
    assert [b["filters"] for b in bodies[1:]] == [{"key": "a.b"}, {"key": "e.f"}]
    assert status == 0


# other verbs -----------------------------------------------------------------------------


def test_property_assign_adds_to_the_objects_it_has() -> None:
    current = {"status": 0, "rows": [{"id": 4, "objects": ["user"]}], "total": 1}
    code, _out, err, rec = qa("property key=p1 assign vm, host", Recorder([current]))
    assert code == 0, err
    assert rec.bodies[1] == {
        "action": "property_update",
        "filters": {"id": 4},
        "arguments": {"__property_assign__": ["host", "user", "vm"]},
    }
    current = {"status": 0, "rows": [{"id": 4, "objects": ["user", "vm"]}], "total": 1}
    _code, _out, _err, rec = qa("property key=p1 unassign vm", Recorder([current]))
    assert rec.bodies[1]["arguments"] == {"__property_assign__": ["user"]}


def test_admin_can_without_filters_is_the_admin_logged_in() -> None:
    code, _out, err, rec = qa("admin can config.*")
    assert code == 0, err
    assert rec.bodies == [
        {"action": "get_acls_in_admins", "filters": {"admin_id": [3], "name": {"~": "config.%"}},
         "fields": ["name"], "order_by": {"field": ["name"], "order": "-asc"}},
    ]  # fmt: skip


def test_config_ssl_sends_the_files_contents(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n")
    code, _out, err, rec = qa(f"config ssl key={key}, cert={cert}")
    assert code == 0, err
    assert rec.bodies == [
        {"action": "config_ssl", "arguments": {"cert": cert.read_text(), "key": key.read_text()}}
    ]
    code, _out, err, rec = qa(f"config ssl key={key}, cert={tmp_path / 'nope.pem'}")
    assert code == 1
    assert "nope.pem: cannot read it" in err
    (tmp_path / "plain.txt").write_text("hello")
    code, _out, err, rec = qa(f"config ssl key={key}, cert={tmp_path / 'plain.txt'}")
    assert code == 1
    assert "not a PEM file" in err
    assert rec.bodies == []


def test_di_new_with_a_local_file_uploads_it(tmp_path: Path) -> None:
    image = tmp_path / "desk.tar.gz"
    image.write_bytes(b"\x1f\x8b")
    code, _out, err, rec = qa(f"di new disk_image={image}, osf_id=7")
    assert code == 0, err
    assert rec.bodies == [{"multipart": True, "_path": "/api/di/upload"}]
    code, _out, err, rec = qa(f"di new disk_image={tmp_path / 'missing.tar.gz'}, osf_id=7")
    assert code == 1
    assert "no such local file" in err
    assert rec.bodies == []


def test_version_shows_both_sides() -> None:
    code, out, err, rec = qa("version")
    assert code == 0, err
    assert out.startswith(f"qa (QVD admin CLI) {__version__}\n")
    assert "API: database schema abc123, multitenant, hypervisor lxc" in out
    assert rec.logins == 0


def test_an_expired_session_logs_in_again_once() -> None:
    rec = Recorder([{"status": 3300, "message": "session expired"}])
    code, _out, err, rec = qa("vm get", rec)
    assert code == 0, err
    assert rec.logins == 2
    assert len(rec.bodies) == 2


# piped sessions --------------------------------------------------------------------------


def test_piped_commands_share_one_session_and_go_on_after_errors() -> None:
    rec = Recorder([{"status": 0, "rows": [{"id": 1, "name": "a"}], "total": 1},
                    {"status": 4210, "message": "forbidden"}])  # fmt: skip
    lines = "vm get id, name\n# a comment\n\nhost get\nnope get\nblock 7\nuser get\nquit\nvm get\n"
    code, out, err, rec = qa("", rec, inp=lines)
    assert code == 2  # the last failure: 'nope' is no object
    assert "| 1  | a    |" in out
    assert "qa: error 4210: forbidden" in err
    assert "unknown object or command 'nope'" in err
    assert "Page size: 7" in out
    assert [b["action"] for b in rec.bodies] == ["vm_get_list", "host_get_list", "user_get_list"]
    assert rec.bodies[-1]["block"] == 7
    assert (rec.logins, rec.logouts) == (1, 1)


def test_a_shell_line_may_choose_its_format() -> None:
    reply = {"status": 0, "total": 1, "rows": [{"id": 1, "name": "a"}]}
    lines = "-f csv user get id, name\nuser get id\n-f xml user get\n"
    code, out, err, _ = qa("", Recorder([reply, dict(reply)]), inp=lines)
    assert out.startswith("id,name\n1,a\n+----+\n")
    assert "the format is one of table, csv, json, not 'xml'" in err
    assert code == 2


def test_piped_session_logout_and_login() -> None:
    lines = "vm get\nlogout\nlogin ana tenantA\nsecret\nvm get\n"
    code, out, err, rec = qa("shell", inp=lines)
    assert code == 0, err
    assert "Logged out" in out
    assert "Logged in as ana" in out
    assert (rec.logins, rec.logouts) == (2, 2)


def test_piped_password_change_reads_three_lines() -> None:
    code, out, err, rec = qa("", inp="password\nold\nn3w\nn3w\npassword\nold\na\nb\n")
    assert code == 1
    assert "Password changed" in out
    assert "the two passwords differ" in err
    assert rec.bodies == [
        {"action": "myadmin_update", "arguments": {"password": "n3w", "current_password": "old"}}
    ]


def test_listing_every_page_without_a_terminal() -> None:
    pages = [
        {"status": 0, "total": 3, "rows": [{"id": 1}, {"id": 2}]},
        {"status": 0, "total": 3, "rows": [{"id": 3}]},
    ]
    code, out, err, rec = qa("-f csv user get id", Recorder(list(pages)), inp="")
    assert code == 0, err
    assert out == "id\n1\n2\n3\n"
    code, out, err, rec = qa("", Recorder(list(pages)), inp="block 2\nuser get id\n")
    assert out.endswith("| 3  |\n+----+\nTotal: 3\n")
    assert [b.get("offset") for b in rec.bodies] == [None, 2]
