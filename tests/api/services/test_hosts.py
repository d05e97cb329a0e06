"""``host_get_state`` and the values hosts carry of supertenant property keys
(reference §5.3)."""

from __future__ import annotations

from tests.api.conftest import Api, World
from tests.api.services.test_properties import _ok


def test_host_get_state(api: Api, world: World) -> None:
    root = api.login("root")
    r = _ok(api.act("host_get_state", sid=root, filters={"id": world.host}))
    assert r["rows"] == [{"id": world.host, "state": "running"}]
    assert api.act("host_get_state", sid=root)["status"] == 6220
    assert api.act("host_get_state", sid=root, filters={"id": 999999})["status"] == 1300
    r = api.act("host_get_state", sid=api.login("adminA", "tenantA"), filters={"id": world.host})
    assert r["status"] == 4210


def test_hosts_carry_values_of_supertenant_keys(api: Api, world: World) -> None:
    """Hosts belong to no tenant: a superadmin registers their keys in the supertenant
    (0), assigns them to hosts, and sets values on a host."""
    root = api.login("root")
    key = _ok(api.act("property_create", sid=root, arguments={
        "key": "rack", "tenant_id": 0, "__property_assign__": ["host"],
    }))["rows"][0]["id"]  # fmt: skip
    _ok(api.act("host_update", sid=root, filters={"id": world.host},
                arguments={"__properties_changes__": {"set": {"rack": "r12"}}}))  # fmt: skip
    got = api.act("host_get_list", sid=root, filters={"id": world.host}, fields=["properties"])
    assert got["rows"] == [{"properties": {"rack": "r12"}}]
    r = api.act("host_update", sid=root, filters={"id": world.host},
                arguments={"__properties_changes__": {"set": {"nokey": "x"}}})  # fmt: skip
    assert r["status"] in (1200, 6330), r
    _ok(api.act("host_update", sid=root, filters={"id": world.host},
                arguments={"__properties_changes__": {"delete": ["rack"]}}))  # fmt: skip
    _ok(api.act("property_delete", sid=root, filters={"id": key}))
    # a tenant administrator cannot register keys in the supertenant
    r = api.act("property_create", sid=api.login("adminA", "tenantA"),
                arguments={"key": "rack", "tenant_id": 0})  # fmt: skip
    assert r["status"] == 4230
