"""``mytenant_update``: an administrator changes its own tenant only (reference §5.3)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.db.models import Tenant
from tests.api.conftest import Api, World
from tests.api.services.test_properties import _admin, _ok


# ---- mytenant_update -----------------------------------------------------------------------
def _tenant(engine: Engine, tenant_id: int) -> tuple[str, int, str | None]:
    with Session(engine) as s:
        t = s.get_one(Tenant, tenant_id)
        return t.language, t.block, t.description


def test_mytenant_update_changes_only_the_callers_tenant(
    api: Api, world: World, api_engine: Engine
) -> None:
    sid = api.login("adminA", "tenantA")
    b_before = _tenant(api_engine, world.tenants["B"])
    args = {"language": "es", "block": 25, "description": "ours"}
    _ok(api.act("mytenant_update", sid=sid, arguments=args))
    assert _tenant(api_engine, world.tenants["A"]) == ("es", 25, "ours")
    assert _tenant(api_engine, world.tenants["B"]) == b_before
    setup = _ok(api.act("current_admin_setup", sid=sid))["rows"][0]
    assert (setup["tenant_language"], setup["tenant_block"]) == ("es", 25)
    own = api.act("mytenant_update", sid=sid, filters={"id": world.tenants["A"]},
                  arguments={"block": 30})  # fmt: skip
    assert own["status"] == 0
    theirs = api.act("mytenant_update", sid=sid, filters={"id": world.tenants["B"]},
                     arguments={"block": 99})  # fmt: skip
    nobody = api.act("mytenant_update", sid=sid, filters={"id": 999999}, arguments={"block": 99})
    assert (theirs["status"], nobody["status"]) == (6210, 6210)
    assert theirs["message"] == nobody["message"]
    assert _tenant(api_engine, world.tenants["B"]) == b_before


def test_mytenant_update_checks_its_arguments(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    assert api.act("mytenant_update", sid=sid)["status"] == 6240
    assert api.act("mytenant_update", sid=sid, arguments={"language": "xx"})["status"] == 6320
    assert api.act("mytenant_update", sid=sid, arguments={"block": 0})["status"] == 6320
    assert api.act("mytenant_update", sid=sid, arguments={"name": "new"})["status"] == 6230
    # QVD Manager holds config.qvd. but not config.wat.
    _admin(api_engine, "qvdmgr", world.tenants["A"], "QVD Manager")
    r = api.act("mytenant_update", sid=api.login("qvdmgr", "tenantA"), arguments={"block": 20})
    assert r["status"] == 4210


@pytest.mark.usefixtures("world")
def test_a_superadmin_sets_the_supertenants_defaults(api: Api, api_engine: Engine) -> None:
    _ok(api.act("mytenant_update", sid=api.login("root"), arguments={"block": 50}))
    assert _tenant(api_engine, 0)[1] == 50
