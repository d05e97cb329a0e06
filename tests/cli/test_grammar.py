"""The ``qa`` grammar: a table of command lines and the requests they send (the API
is a recording MockTransport here)."""

from __future__ import annotations

import io
import json
import shlex
from typing import Any

import httpx
import pytest

from qvd.cli import run
from qvd.cli.grammar import GrammarError, parse, tokenize

LOGIN = ["-u", "https://api.test/", "-l", "root", "-p", "pw", "-t", "*"]
ORDER_NONE = {"field": [], "order": "-asc"}


class Recorder:
    def __init__(self, replies: list[dict[str, Any]] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.replies = replies or []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        if body.get("action") == "current_admin_setup":
            return httpx.Response(200, json={"status": 0, "sid": "S1", "rows": [{"sid": "S1"}]})
        self.bodies.append({k: v for k, v in body.items() if k not in ("sid", "parameters")})
        reply = self.replies.pop(0) if self.replies else {"status": 0, "rows": [], "total": 0}
        return httpx.Response(200, json=reply)


def qa(line: str, recorder: Recorder | None = None) -> tuple[int, str, str, Recorder]:
    rec = recorder or Recorder()
    out, err = io.StringIO(), io.StringIO()
    code = run(
        [*LOGIN, *shlex.split(line)],
        out=out,
        err=err,
        transport=httpx.MockTransport(rec),
        environ={"HOME": "/nonexistent"},
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
    ("vm 'id>=5, id<9, name!=x' del",
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
     {"action": "di_create", "arguments": {"disk_image": "x.tar.gz", "osf_id": "7",
                                           "__tags__": ["default", "beta"]}}),
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
     {"action": "config_delete", "filters": {"key": {"=": "l7r.auth.plugins"}}}),
    ("tenant new name=acme", {"action": "tenant_create", "arguments": {"name": "acme"}}),
    ('user new name=bob, description="a long one"',
     {"action": "user_create", "arguments": {"name": "bob", "description": "a long one"}}),
    ("host name=get get", {"action": "host_get_list", "filters": {"name": {"=": "get"}},
                           "fields": [], "order_by": ORDER_NONE, "block": 25}),
]  # fmt: skip


@pytest.mark.parametrize(("line", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_command_lines_become_requests(line: str, expected: dict[str, Any]) -> None:
    code, _out, err, rec = qa(line)
    assert code == 0, err
    assert rec.bodies == [expected]


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
        "vm start",
        "vm name=x",
        "vm name= get",
        "vm name=x get order",
        "nope get",
        "vm (name=x get",
        "user name=x start",
        "vm 'id=[1:2' get",
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
    code, out, _err, _ = qa("")
    assert code == 2
    assert "usage" in out


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
