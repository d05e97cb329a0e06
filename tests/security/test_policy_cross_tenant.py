"""A tenant administrator touching another tenant's policies: listing, changing or
deleting them by id, creating one in the other tenant (``tenant_id``), or aiming one
of their own at the other tenant's OSF (``osf_id``) — which would let their policy
stop or start the other tenant's desktops.

The guard: every policy action selects rows in the caller's tenant scope
(``in_scope(Policy.tenant_id)``), ``tenant_id`` is for superadmins only, and an OSF is
looked up in the policy's own tenant; the answers name nothing of the other tenant."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.db.models import Policy
from tests.api.conftest import Api, World
from tests.api.conftest import api as api
from tests.api.conftest import api_engine as api_engine
from tests.api.conftest import config as config
from tests.api.conftest import world as world
from tests.api.services.test_properties import _leaks_b, _ok


def test_a_tenant_admin_cannot_see_or_change_another_tenants_policy(
    api: Api, world: World, api_engine: Engine
) -> None:
    root = api.login("root")
    theirs = _ok(api.act("policy_create", sid=root, arguments={
        "tenant_id": world.tenants["B"], "name": "stop B", "kind": "idle_stop", "minutes": 30,
        "osf_id": world.osfs["B"],
    }))["rows"][0]["id"]  # fmt: skip
    sid = api.login("adminA", "tenantA")

    listed = _ok(api.act("policy_get_list", sid=sid))
    assert listed["rows"] == []
    assert not _leaks_b(listed)
    by_id = _ok(api.act("policy_get_list", sid=sid, filters={"id": theirs}))
    assert by_id["rows"] == []

    changes = {"minutes": 1, "enabled": False}
    for action, args in (("policy_update", changes), ("policy_delete", {})):
        r = api.act(action, sid=sid, filters={"id": theirs}, arguments=args)
        assert r["status"] != 0, r
        assert not _leaks_b(r)
    with Session(api_engine) as s:
        row = s.get_one(Policy, theirs)
        assert (row.minutes, row.enabled, row.name) == (30, True, "stop B")

    # creating one in tenant B, or one of A's aimed at B's OSF
    r = api.act("policy_create", sid=sid, arguments={
        "tenant_id": world.tenants["B"], "name": "x", "kind": "idle_stop", "minutes": 1,
    })  # fmt: skip
    assert r["status"] == 4230, r
    r = api.act("policy_create", sid=sid, arguments={
        "name": "x", "kind": "idle_stop", "minutes": 1, "osf_id": world.osfs["B"],
    })  # fmt: skip
    assert r["status"] == 7110, r
    assert not _leaks_b(r), r
    mine = _ok(api.act("policy_create", sid=sid, arguments={
        "name": "mine", "kind": "idle_stop", "minutes": 1,
    }))["rows"][0]["id"]  # fmt: skip
    r = api.act("policy_update", sid=sid, filters={"id": mine},
                arguments={"osf_id": world.osfs["B"]})  # fmt: skip
    assert r["status"] != 0, r
    assert not _leaks_b(r), r
    with Session(api_engine) as s:
        assert s.get_one(Policy, mine).osf_id is None
        assert s.query(Policy).filter(Policy.tenant_id == world.tenants["B"]).count() == 1
