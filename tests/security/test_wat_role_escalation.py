"""Privilege escalation through the WAT's role and administrator pages: a tenant
administrator posts the ACL editor's and the administrator page's forms by hand to
reach ACLs, roles and administrators beyond its tenant, and a stored description tries
to run script in the editor. Each attempt goes through the real WAT and API over a real
database; the API's scope and ACL checks (and Jinja's autoescape) are the guards: without
them these tests fail. The outcome is read back as the superadmin."""

from __future__ import annotations

import re

from tests.wat.conftest import Wat, wat

__all__ = ["wat"]


def _effective(w: Wat, role_id: int) -> set[str]:
    page = w.client.get(f"/roles/{role_id}").text
    return set(re.findall(r'<tr data-acl="([^"]+)" data-effective="yes"', page))


def _admin_roles(w: Wat, admin_id: int) -> str:
    page = w.client.get(f"/administrators/{admin_id}").text
    roles = page[page.index('id="roles"') :]
    return roles[: roles.index("</ul>")]


def test_a_tenant_admin_cannot_grant_supertenant_acls(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    role = wat.world.roles["A"]
    for acl in ("tenant.create.", "host.create.", "tenant.see-main."):
        r = wat.client.post(f"/roles/{role}/acls", data={"csrf": csrf, "acl": acl, "how": "grant"})
        assert r.status_code >= 400, acl
        assert f"there is no ACL &#39;{acl}&#39;" in r.text
    wat.login()
    assert not {a for a in _effective(wat, role) if a.startswith(("tenant.", "host."))}


def test_a_tenant_admin_cannot_inherit_or_take_another_tenants_role(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    mine, theirs = wat.world.roles["A"], wat.world.roles["B"]
    r = wat.client.post(
        f"/roles/{mine}/roles", data={"csrf": csrf, "role": str(theirs), "how": "inherit"}
    )
    assert r.status_code == 400
    assert "usable in this tenant" in r.text
    me = wat.world.admins["A"]
    r = wat.client.post(
        f"/administrators/{me}/roles", data={"csrf": csrf, "role": str(theirs), "how": "assign"}
    )
    assert r.status_code == 400
    assert "usable in this tenant" in r.text
    wat.login()
    assert "roleB" not in wat.client.get(f"/roles/{mine}").text
    assert "roleB" not in _admin_roles(wat, me)


def test_a_tenant_admin_cannot_change_a_builtin_role(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    listing = wat.client.get("/roles?q=Operator+L1").text
    builtin = int(re.search(r'<tr data-id="(\d+)"', listing).group(1))  # type: ignore[union-attr]
    before = _effective(wat, builtin)
    r = wat.client.post(
        f"/roles/{builtin}/acls",
        data={"csrf": csrf, "acl": "administrator.create.", "how": "grant"},
    )
    assert r.status_code == 403
    assert "built in and cannot be changed" in r.text
    assert _effective(wat, builtin) == before


def test_a_stored_description_cannot_run_script(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    role = wat.world.roles["A"]
    attack = '</textarea><script>alert(1)</script><img src=x onerror="alert(2)">'
    r = wat.client.post(
        f"/roles/{role}", data={"csrf": csrf, "name": "roleA", "description": attack}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/roles/{role}").text
    assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert 'onerror="alert(2)"' not in page
