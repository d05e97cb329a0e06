"""Every create and update of every kind of object refuses names that break their rule
(qvd.config.names), on both faces, with QVD's status code and a message naming the
object, the argument, the reason and the rule; good names of real life go in; rows
stored before the rules still list (real PostgreSQL, in-process API)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from qvd.api.errors import InvalidRequest
from qvd.api.uploads.images import check_name
from qvd.config.names import HOST_NAME, LOGIN, PROPERTY_KEY, VM_NAME
from tests.api.conftest import Api, World

ATTACK = "x\nlxc.hook.pre-start = /bin/sh -c 'id > /tmp/pwned'"
BIDI = "desk\u202etxt.exe"


def _refused(r: dict[str, Any], code: int, *words: str) -> None:
    """The answer refuses with ``code`` and says ``words`` (a multi-object update
    reports its one failure)."""
    if r["status"] == 1200:
        (r,) = r["failures"].values()
    assert r["status"] == code, r
    for word in words:
        assert word in r["message"], (word, r["message"])


# (action, arguments, status, what the message says), as tenant A's administrator
TENANT_ADMIN_CREATES: list[tuple[str, dict[str, Any], int, str]] = [
    *[("vm_create", {"name": bad}, 6320, "is not a valid VM name")
      for bad in (ATTACK, BIDI, "-x", "..", "a/b", "a\tb", "x" * 65)],
    *[("user_create", {"name": bad, "password": "pw"}, 6320, "is not a valid login")
      for bad in ("../../etc", "/", "..", "-rf", "a\nb", "bob smith", "a\\b", "\u200bbob")],
    ("osf_create", {"name": ATTACK}, 6320, "is not a valid OSF name"),
    ("osf_create", {"name": "../o"}, 6320, "is not a valid OSF name"),
    ("role_create", {"name": ATTACK}, 6320, "is not a valid role name"),
    ("administrator_create", {"name": "../adm", "password": "pw"}, 6320,
     "is not a valid administrator name"),
    *[("di_create", {"disk_image": bad, "osf_id": 0}, 6320, "is not a valid disk image file name")
      for bad in ("../x.tar", "a\nb.tar", ".hidden.tar", "-x.tar", "a\\b.tar")],
    *[("property_create", {"key": bad}, 6330, "is not a valid property key")
      for bad in ("a\nb", "a=b", "a b", "a:b", "#k", "k\u2066")],
    ("config_set", {"key": "auth.ldap.x\ny", "value": "v"}, 6380,
     "is not a valid configuration key"),
    ("config_set", {"key": "auth.ldap.host", "value": "ldap://h\nauth.ldap.binddn = x"}, 6320,
     "is not a valid configuration value"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("action", "arguments", "code", "says"),
    TENANT_ADMIN_CREATES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(TENANT_ADMIN_CREATES)],
)
def test_creates_refuse_bad_names(
    shared: tuple[Api, World, Engine],
    action: str,
    arguments: dict[str, Any],
    code: int,
    says: str,
) -> None:
    api, world, _ = shared
    args = dict(arguments)
    if action == "vm_create":
        args |= {"user_id": world.users["A"], "osf_id": world.osfs["A"]}
    if action == "di_create":
        args["osf_id"] = world.osfs["A"]
    sid = api.login("adminA", "tenantA")
    r = api.act(action, sid=sid, arguments=args)
    _refused(r, code, says, "(")  # the rule follows the reason in parentheses


def test_superadmin_creates_refuse_bad_names(shared: tuple[Api, World, Engine]) -> None:
    api, _, _ = shared
    root = api.login("root")
    for bad in ("a@b", "a#b", "x\ny", "*", "-", "../t", "t\u00a0t"):
        _refused(api.act("tenant_create", sid=root, arguments={"name": bad}), 6320,
                 "is not a valid tenant name")  # fmt: skip
    for bad in ("bad name", "-h", "a\nb", "a..b", "under_score", "x" * 64 + ".y"):
        r = api.act("host_create", sid=root, arguments={"name": bad, "address": "10.9.0.1"})
        _refused(r, 6320, "is not a valid host name")
    for bad in ("node1.example", "10.0.0.1\nx", "10.0.0.300"):
        r = api.act("host_create", sid=root, arguments={"name": "h9", "address": bad})
        _refused(r, 6320, "'address'", "is not a valid host address")


def test_updates_refuse_bad_names(shared: tuple[Api, World, Engine]) -> None:
    api, world, _ = shared
    sid = api.login("adminA", "tenantA")
    root = api.login("root")
    updates: list[tuple[str, str, dict[str, Any], dict[str, Any], int, str]] = [
        ("vm_update", sid, {"id": world.vms["A"]}, {"name": ATTACK}, 6320, "VM name"),
        ("vm_update", sid, {"id": world.vms["A"]}, {"di_tag": "a b"}, 6340, "tag"),
        ("user_update", sid, {"id": world.users["A"]}, {"name": "../../etc"}, 6320, "login"),
        ("user_update", sid, {"id": world.users["A"]}, {"name": "/"}, 6320, "login"),
        ("osf_update", sid, {"id": world.osfs["A"]}, {"name": BIDI}, 6320, "OSF name"),
        ("role_update", sid, {"id": world.roles["A"]}, {"name": ATTACK}, 6320, "role name"),
        ("administrator_update", sid, {"id": world.admins["A"]}, {"name": "-x"}, 6320,
         "administrator name"),
        ("tenant_update", root, {"id": world.tenants["A"]}, {"name": "a@b"}, 6320,
         "tenant name"),
        ("host_update", root, {"id": world.host}, {"name": "a\nb"}, 6320, "host name"),
        ("host_update", root, {"id": world.host}, {"address": "x.example"}, 6320,
         "host address"),
        ("property_update", sid, {"id": world.props["A"]}, {"key": "a\nb"}, 6330,
         "property key"),
        ("di_update", sid, {"id": world.dis["A"]}, {"__tags_changes__": {"create": ["a\nb"]}},
         6340, "tag"),
        ("vm_update", sid, {"id": world.vms["A"]},
         {"__properties_changes__": {"set": {"propA\nlxc.x": "v"}}}, 6330, "property key"),
        ("user_update", sid, {"id": world.users["A"]},
         {"__properties_changes__": {"set": {"propA": "v\nlxc.x = y"}}}, 6330, "property value"),
    ]  # fmt: skip
    for action, who, filters, arguments, code, says in updates:
        r = api.act(action, sid=who, filters=filters, arguments=arguments)
        _refused(r, code, f"is not a valid {says}")


def test_rest_face_refuses_with_the_qvd_status(shared: tuple[Api, World, Engine]) -> None:
    api, world, _ = shared
    h = api.headers("adminA", "tenantA")
    r = api.client.post("/api/v1/vms", headers=h, json={
        "name": ATTACK, "user_id": world.users["A"], "osf_id": world.osfs["A"],
    })  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 6320
    assert "is not a valid VM name: it contains a line break (U+000A)" in r.json()["message"]
    r = api.client.patch(f"/api/v1/users/{world.users['A']}", headers=h, json={"name": ".."})
    assert (r.status_code, r.json()["status"]) == (400, 6320)
    assert "is not a valid login" in r.json()["message"]
    r = api.client.post("/api/v1/properties", headers=h, json={"key": "a\nb"})
    assert (r.status_code, r.json()["status"]) == (400, 6330)


def test_real_life_names_go_in(shared: tuple[Api, World, Engine]) -> None:
    api, world, _ = shared
    sid = api.login("adminA", "tenantA")
    for login in ("jo.doe@example.com", "jürgen", "o_brien-2", "ñandú"):
        r = api.act("user_create", sid=sid, arguments={"name": login, "password": "pw"})
        assert r["status"] == 0, r
    for name in ("Escritorio de José (2)", "Ubuntu 24.04 [dev]", "jo.doe@example.com-1",
                 "O'Brien's desktop", "桌面"):  # fmt: skip
        r = api.act("vm_create", sid=sid, arguments={
            "name": name, "user_id": world.users["A"], "osf_id": world.osfs["A"],
        })  # fmt: skip
        assert r["status"] == 0, r
    r = api.act("property_create", sid=sid, arguments={"key": "qvd.vm.user.home"})
    assert r["status"] == 0, r
    r = api.act("vm_update", sid=sid, filters={"id": world.vms["A"]},
                arguments={"__tags_changes__": {}, "di_tag": "2026-12-01-000"})  # fmt: skip
    assert r["status"] in (0, 1200), r  # the tag rule allows it (the DI may not have it)
    if r["status"] == 1200:
        assert "is not a valid" not in repr(r)
    root = api.login("root")
    for name, address in (("qvd-node-01.example.com", "10.9.0.2"), ("node7", "fd00::7")):
        r = api.act("host_create", sid=root, arguments={"name": name, "address": address})
        assert r["status"] == 0, r
    r = api.act("tenant_create", sid=root, arguments={"name": "Acme Corp. Madrid"})
    assert r["status"] == 0, r


def test_rows_stored_before_the_rules_still_list(shared: tuple[Api, World, Engine]) -> None:
    api, world, engine = shared
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (tenant_id, login) VALUES (:t, '../../etc')"),
                     {"t": world.tenants["A"]})  # fmt: skip
        conn.execute(text("UPDATE vms SET name = 'old/name <b>' WHERE id = :v"),
                     {"v": world.vms["A"]})  # fmt: skip
    sid = api.login("adminA", "tenantA")
    users = api.act("user_get_list", sid=sid, filters={"name": "../../etc"})
    assert users["status"] == 0, users
    assert users["total"] == 1
    vms = api.act("vm_get_list", sid=sid, filters={"id": world.vms["A"]})
    assert vms["status"] == 0, vms
    assert vms["rows"][0]["name"] == "old/name <b>"
    h = api.headers("adminA", "tenantA")
    assert api.client.get(f"/api/v1/vms/{world.vms['A']}", headers=h).status_code == 200


def test_uploaded_and_staged_file_names_follow_the_di_file_name_rule() -> None:
    assert check_name("ubuntu 24.04.tar.gz") == "ubuntu 24.04.tar.gz"
    for bad in ("a\nb.tar", "a\u202egz.tar", "../x.tar", "-x.tar", ".x.tar", "a\\b.tar"):
        with pytest.raises(InvalidRequest, match="is not a plain file name"):
            check_name(bad)


def test_the_openapi_document_states_each_rule(shared: tuple[Api, World, Engine]) -> None:
    api, _, _ = shared
    schemas = api.client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    for model, field, rule in (("VmCreate", "name", VM_NAME), ("UserUpdate", "name", LOGIN),
                               ("HostCreate", "name", HOST_NAME),
                               ("PropertyCreate", "key", PROPERTY_KEY)):  # fmt: skip
        prop = schemas[model]["properties"][field]
        assert prop["description"] == rule.summary, (model, prop)
        assert rule.max_len in (prop.get("maxLength"), *(a.get("maxLength") for a in
                                                          prop.get("anyOf", [])))  # fmt: skip
