"""Forged mass actions on a WAT list: a cross-site form (no anti-CSRF token) that
blocks every VM, and a tenant administrator who edits the form to add ids of another
tenant's VMs. Neither may touch anything: the first is refused (403) before any
action runs, the second reaches only the administrator's own tenant (the API's
scope), and the page says so."""

from __future__ import annotations

from typing import Any

from tests.wat.conftest import Wat
from tests.wat.listviews import wat

__all__ = ["wat"]


def _blocked(w: Wat, csrf: str, ids: list[int]) -> dict[int, Any]:
    answer = w.client.post(
        "/api",
        json={"action": "vm_get_list", "filters": {"id": ids}, "fields": ["id", "blocked"]},
        headers={"X-CSRF-Token": csrf},
    ).json()
    assert answer["status"] == 0, answer
    return {int(r["id"]): bool(r["blocked"]) for r in answer["rows"]}


def test_cross_site_mass_block_is_refused(wat: Wat) -> None:
    csrf = wat.login()
    ids = [wat.world.vms["A"], wat.world.vms["B"]]
    forged = {"op": "block", "ids": [str(i) for i in ids]}
    r = wat.client.post("/test-vms/mass", data=forged, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = wat.client.post("/test-vms/mass", data={**forged, "csrf": "not-the-token"})
    assert r.status_code == 403
    assert _blocked(wat, csrf, ids) == dict.fromkeys(ids, False)


def test_another_tenants_ids_in_a_mass_action_are_not_touched(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    vm_a, vm_b = wat.world.vms["A"], wat.world.vms["B"]
    r = wat.client.post(
        "/test-vms/mass", data={"csrf": csrf, "op": "block", "ids": [str(vm_a), str(vm_b)]}
    )
    assert r.status_code == 200
    assert "Block: 1 done" in r.text
    wat.client.cookies.clear()
    root = wat.login()
    assert _blocked(wat, root, [vm_a, vm_b]) == {vm_a: True, vm_b: False}
    # and the confirmation step does not name the other tenant's objects either
    wat.client.cookies.clear()
    csrf = wat.login("adminA", "tenantA")
    ask = wat.client.post(
        "/test-vms/mass", data={"csrf": csrf, "op": "delete", "ids": [str(vm_a), str(vm_b)]}
    )
    assert "vmA" in ask.text
    assert "vmB" not in ask.text
    assert f'value="{vm_b}"' not in ask.text
