"""QVD's own admin CLI ``qa4`` against a real API server: each everyday command of
real-clients.md section C replayed with the exact request bodies, the answers checked
field by field (0/1 booleans, totals, row shapes, the default ``vm get`` columns)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.api.contract.conftest import Qa4, Server

# qa4's default TABLE columns of `vm get`, as API fields (aliases resolved)
VM_COLUMNS = ("id", "name", "blocked", "user_name", "host_name", "di_name", "ip", "ip_in_use",
              "di_name_in_use", "state", "user_state")  # fmt: skip
LIST = {"arguments": {}, "fields": [], "filters": {}, "order_by": {"field": [], "order": "-asc"}}


@pytest.fixture(scope="module")
def tenant_admin(server: Server) -> Qa4:
    return Qa4(server, "adminA", "tenantA")


@pytest.fixture(scope="module")
def superadmin(server: Server) -> Qa4:
    return Qa4(server, "root", "*")


def _ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["status"] == 0, answer
    assert answer["message"] == "Successful completion"
    assert isinstance(answer["total"], int)
    assert isinstance(answer["rows"], list)
    return answer


def test_vm_get(server: Server, tenant_admin: Qa4) -> None:
    r = _ok(tenant_admin.command({"action": "vm_get_list", **LIST}))
    assert r["total"] == len(r["rows"]) >= 1
    row = next(row for row in r["rows"] if row["name"] == "vmA")
    for column in VM_COLUMNS:
        assert column in row, column
    assert row["id"] == server.world.vms["A"]
    assert (row["name"], row["blocked"], row["state"]) == ("vmA", 0, "stopped")
    assert (row["user_name"], row["user_state"]) == ("usera", "disconnected")


def test_vm_get_chosen_fields_of_a_named_vm(server: Server, tenant_admin: Qa4) -> None:
    r = _ok(tenant_admin.command({
        "action": "vm_get_list", "arguments": {}, "fields": ["name", "id", "ip"],
        "filters": {"name": {"=": "vmA"}}, "order_by": {"field": [], "order": "-asc"},
    }))  # fmt: skip
    assert r["total"] == 1
    assert r["rows"] == [{"name": "vmA", "id": server.world.vms["A"], "ip": r["rows"][0]["ip"]}]
    assert r["rows"][0]["ip"].startswith("10.3.0.")


def test_vm_get_order_desc(server: Server, superadmin: Qa4) -> None:
    r = _ok(superadmin.command({
        **LIST, "action": "vm_get_list", "order_by": {"field": ["name", "id"], "order": "-desc"},
    }))  # fmt: skip
    names = [row["name"] for row in r["rows"]]
    assert names == sorted(names, reverse=True)
    assert {"vmA", "vmB"} <= set(names)


@pytest.mark.parametrize(
    ("action", "admin", "columns"),
    [
        ("user_get_list", "tenant", ("id", "name", "blocked", "number_of_vms",
                                     "number_of_vms_connected")),
        ("host_get_list", "super", ("id", "name", "blocked", "address", "frontend", "backend",
                                    "state", "number_of_vms_connected")),
        ("osf_get_list", "tenant", ("id", "name", "overlay", "user_storage", "memory",
                                    "number_of_vms", "number_of_dis")),
        ("di_get_list", "tenant", ("id", "disk_image", "version", "osf_name", "blocked", "state")),
        ("tenant_get_list", "super", ("id", "name", "language", "block", "blocked")),
        ("administrator_get_list", "tenant", ("id", "name", "language", "block")),
    ],
)  # fmt: skip
def test_object_get_lists(
    server: Server, tenant_admin: Qa4, superadmin: Qa4, action: str, admin: str,
    columns: tuple[str, ...],
) -> None:  # fmt: skip
    qa4 = tenant_admin if admin == "tenant" else superadmin
    r = _ok(qa4.command({"action": action, **LIST}))
    assert r["total"] == len(r["rows"]) >= 1
    for row in r["rows"]:
        for column in columns:
            assert column in row, (action, column)
        for flag in ("blocked", "frontend", "backend", "overlay", "user_storage"):
            if flag in row and flag != "user_storage":
                assert row[flag] in (0, 1), (action, flag, row[flag])


def test_host_flags_are_0_or_1(server: Server, superadmin: Qa4) -> None:
    r = _ok(superadmin.command({**LIST, "action": "host_get_list"}))
    row = next(row for row in r["rows"] if row["id"] == server.world.host)
    assert (row["blocked"], row["frontend"], row["backend"]) == (0, 1, 1)


def test_config_get(superadmin: Qa4) -> None:
    r = _ok(superadmin.command({**LIST, "action": "config_get"}))
    assert r["total"] == len(r["rows"]) > 10
    row = next(row for row in r["rows"] if row["key"] == "l7r.port")
    assert row["is_default"] in (0, 1)
    assert {"key", "operative_value", "default_value", "is_default"} <= set(row)


def test_user_new_then_vm_new_by_names(server: Server, tenant_admin: Qa4) -> None:
    r = _ok(tenant_admin.command({
        "action": "user_create", "arguments": {"name": "alice", "password": "secret"},
    }))  # fmt: skip
    assert r["total"] == 1
    assert isinstance(r["rows"][0]["id"], int)
    r = _ok(tenant_admin.command({
        "action": "vm_create", "arguments": {"name": "myvm", "osf": "osfA", "user": "alice"},
    }))  # fmt: skip
    assert r["total"] == 1
    vm_id = r["rows"][0]["id"]
    got = _ok(tenant_admin.command({**LIST, "action": "vm_get_list",
                                    "filters": {"name": {"=": "myvm"}}}))  # fmt: skip
    assert got["rows"][0]["id"] == vm_id
    assert got["rows"][0]["user_name"] == "alice"


def _vm(qa4: Qa4, name: str) -> int:
    r = qa4.command({"action": "vm_create",
                     "arguments": {"name": name, "osf": "osfA", "user": "usera"}})  # fmt: skip
    return int(_ok(r)["rows"][0]["id"])


def _field(qa4: Qa4, name: str, field: str) -> Any:
    r = _ok(qa4.command({"action": "vm_get_list", "fields": [field],
                         "filters": {"name": {"=": name}}}))  # fmt: skip
    return r["rows"][0][field]


def test_start_stop_disconnect_delete_by_name(server: Server, tenant_admin: Qa4) -> None:
    vm_id = _vm(tenant_admin, "cycle")
    lookup, r = tenant_admin.on_named("vm", "cycle", {"action": "vm_start"})
    assert lookup["rows"] == [{"id": vm_id}]
    assert (_ok(r)["total"], r["rows"]) == (1, [])
    assert _field(tenant_admin, "cycle", "host_name") == "node1"
    _, r = tenant_admin.on_named("vm", "cycle", {"action": "vm_stop"})
    assert (_ok(r)["total"], r["rows"]) == (1, [])
    with server.engine.begin() as conn:  # as the L7R leaves it while a user is connected
        conn.execute(text("UPDATE vm_runtimes SET user_state = 'connected' WHERE vm_id = :i"),
                     {"i": vm_id})  # fmt: skip
    _, r = tenant_admin.on_named("vm", "cycle", {"action": "vm_user_disconnect"})
    assert (_ok(r)["total"], r["rows"]) == (1, [])
    _, r = tenant_admin.on_named("vm", "cycle", {"action": "vm_delete"})
    assert (_ok(r)["total"], r["rows"]) == (1, [])
    lookup, r = tenant_admin.on_named("vm", "cycle", {"action": "vm_delete"})
    assert lookup["rows"] == []
    assert r["status"] == 1300  # nothing matched


def test_block_unblock_and_set_by_name(server: Server, tenant_admin: Qa4) -> None:
    _vm(tenant_admin, "blocky")
    _, r = tenant_admin.on_named("vm", "blocky", {"action": "vm_update",
                                                  "arguments": {"blocked": 1}})  # fmt: skip
    assert _ok(r)["total"] == 1
    assert _field(tenant_admin, "blocky", "blocked") == 1
    _, r = tenant_admin.on_named("vm", "blocky", {"action": "vm_update",
                                                  "arguments": {"blocked": 0}})  # fmt: skip
    assert _ok(r)["total"] == 1
    assert _field(tenant_admin, "blocky", "blocked") == 0
    _, r = tenant_admin.on_named("vm", "blocky", {"action": "vm_update",
                                                  "arguments": {"di_tag": "head"}})  # fmt: skip
    assert _ok(r)["total"] == 1
    assert _field(tenant_admin, "blocky", "di_tag") == "head"


def test_a_change_counts_every_object_it_acted_on(server: Server, superadmin: Qa4) -> None:
    w = server.world
    r = _ok(
        superadmin.command(
            {
                "action": "user_update",
                "arguments": {"blocked": 1},
                "filters": {"id": {"=": [w.users["A"], w.users["B"]]}},
            }
        )
    )
    assert (r["total"], r["rows"]) == (2, [])
    r = _ok(
        superadmin.command(
            {
                "action": "user_update",
                "arguments": {"blocked": 0},
                "filters": {"id": {"=": [w.users["A"], w.users["B"]]}},
            }
        )
    )
    assert r["total"] == 2
    r = superadmin.command({"action": "user_update", "arguments": {"blocked": 0},
                            "filters": {"name": {"=": "nobody-has-this-name"}}})  # fmt: skip
    assert r["status"] == 1300
    assert r["message"]


def test_the_look_up_fails_and_qa4_falls_back_to_the_name_filter(server: Server) -> None:
    """An administrator who may delete VMs but not see their ids: the look-up is
    refused, and the delete with the original name filter does the job."""
    from sqlalchemy.orm import Session

    from tests.api.conftest import add_admin

    with Session(server.engine) as s, s.begin():
        add_admin(s, "eraser", server.world.tenants["A"], role="VMs Eraser")
    tenant_admin = Qa4(server, "adminA", "tenantA")
    _vm(tenant_admin, "doomed")
    eraser = Qa4(server, "eraser", "tenantA")
    lookup, r = eraser.on_named("vm", "doomed", {"action": "vm_delete"})
    assert lookup["status"] != 0
    assert (_ok(r)["total"], r["rows"]) == (1, [])
    got = tenant_admin.command({"action": "vm_get_list", "filters": {"name": {"=": "doomed"}}})
    assert got["total"] == 0


def test_version_reads_the_database_version(superadmin: Qa4) -> None:
    r = superadmin.command({}, path="/api/info")
    assert r["status"] == 0
    assert isinstance(r["version"]["database"], str)
    assert r["version"]["database"]
    assert r["multitenant"] in (0, 1)


def test_wrong_password_keeps_qvds_status(server: Server) -> None:
    r = Qa4(server, "adminA", "tenantA", password="Not-This-0ne").command(
        {"action": "vm_get_list", **LIST}
    )
    assert r["status"] == 3200
    assert "Not-This-0ne" not in r["message"]


def test_interactive_login_then_sid(server: Server) -> None:
    """After qa4's interactive ``login``, requests carry ``sid`` instead of credentials."""
    qa4 = Qa4(server, "adminA", "tenantA")
    setup = _ok(qa4.command({"action": "current_admin_setup"}))
    assert (setup["admin_name"], setup["tenant_id"]) == ("adminA", server.world.tenants["A"])
    assert isinstance(setup["admin_id"], int)
    qa4.creds = {"sid": setup["sid"]}
    listed = _ok(qa4.command({"action": "vm_get_list", **LIST}))
    assert listed["total"] == len(listed["rows"])
    assert "vmA" in {row["name"] for row in listed["rows"]}
    assert "vmB" not in {row["name"] for row in listed["rows"]}  # tenant A's only
