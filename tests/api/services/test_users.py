"""``user_get_state`` (reference §5.3)."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from qvd.db.models import VmRuntime
from tests.api.conftest import Api, World
from tests.api.services.test_properties import _admin, _leaks_b, _ok


# ---- user_get_state / host_get_state -------------------------------------------------------
def test_user_get_state(api: Api, world: World, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    user = world.users["A"]
    r = _ok(api.act("user_get_state", sid=sid, filters={"id": user}))
    assert r["rows"] == [{"id": user, "state": "disconnected"}]
    with Session(api_engine) as s, s.begin():
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["A"])
            .values(user_state="connected")
        )
    r = _ok(api.act("user_get_state", sid=sid, filters={"id": user}))
    assert r["rows"] == [{"id": user, "state": "connected"}]
    assert api.act("user_get_state", sid=sid)["status"] == 6220
    theirs = api.act("user_get_state", sid=sid, filters={"id": world.users["B"]})
    assert theirs["status"] == 1300
    assert not _leaks_b(theirs)
    _admin(api_engine, "vmreader", world.tenants["A"], "VMs Reader")
    r = api.act("user_get_state", sid=api.login("vmreader", "tenantA"), filters={"id": user})
    assert r["status"] == 4210
