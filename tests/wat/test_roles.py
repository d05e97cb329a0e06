"""The roles pages and the ACL editor, server side: a role's grants, denies and
inherited roles change its effective result; built-in roles are read-only; another
tenant's role is not there (404)."""

from __future__ import annotations

import re

from tests.wat.conftest import Wat, created_id, option_value

_EFFECTIVE_ROW = re.compile(r'<tr data-acl="([^"]+)" data-effective="(yes|no)"')


def _create_role(wat: Wat, csrf: str, name: str, tenant: int | None = None) -> int:
    data = {"csrf": csrf, "name": name}
    if tenant is not None:
        data["tenant_id"] = str(tenant)
    r = wat.client.post("/roles/new", data=data)
    assert r.status_code == 303, r.text
    return created_id(r.headers["location"], "/roles", done="")


def _effective(html: str) -> dict[str, str]:
    """ACL name → "yes"/"no" of the effective-result table."""
    table = html[html.index('<table id="effective"') :]
    table = table[: table.index("</table>")]
    return dict(_EFFECTIVE_ROW.findall(table))


def _section(html: str, ident: str) -> str:
    start = html.index(f'id="{ident}"')
    return html[start : html.index("\n  </ul>", start)]  # the outer list's end


def test_taking_back_a_grant_also_inherited_keeps_it_inherited(wat: Wat) -> None:
    """'Remove' on a granted ACL takes back the grant; the API's unassign would deny an
    ACL the role still inherits, and the editor must not leave that deny behind."""
    csrf = wat.login()
    role = _create_role(wat, csrf, "mac readers", wat.world.tenants["A"])
    reader = option_value(wat.client.get(f"/roles/{role}").text, "VMs Reader")
    for path, data in (
        (f"/roles/{role}/roles", {"role": str(reader), "how": "inherit"}),
        (f"/roles/{role}/acls", {"acl": "vm.see.mac", "how": "grant"}),
        (f"/roles/{role}/acls", {"acl": "user.see-main.", "how": "grant"}),
    ):
        assert wat.client.post(path, data={"csrf": csrf, **data}).status_code == 303
    for acl in ("vm.see.mac", "user.see-main."):
        r = wat.client.post(
            f"/roles/{role}/acls", data={"csrf": csrf, "acl": acl, "how": "ungrant"}
        )
        assert r.status_code == 303, r.text
    page = wat.client.get(f"/roles/{role}").text
    effective = _effective(page)
    assert effective["vm.see.mac"] == "yes"  # inherited from VMs Reader still
    assert "user.see-main." not in effective  # only granted here: gone
    assert 'data-acl="vm.see.mac"' not in _section(page, "denied")
    assert 'data-acl="vm.see.mac"' not in _section(page, "granted")
    row = page[page.index('<tr data-acl="vm.see.mac"') :]
    assert "this role" not in row[: row.index("</tr>")]


def test_inherit_grant_then_deny_changes_the_effective_result(wat: Wat) -> None:
    csrf = wat.login()
    role = _create_role(wat, csrf, "desk operators", wat.world.tenants["A"])
    page = wat.client.get(f"/roles/{role}").text
    assert "<h1>desk operators</h1>" in page
    assert _effective(page) == {}
    reader = option_value(page, "VMs Reader")

    r = wat.client.post(
        f"/roles/{role}/roles", data={"csrf": csrf, "role": str(reader), "how": "inherit"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/roles/{role}").text
    assert "VMs Reader" in _section(page, "inherited")
    effective = _effective(page)
    assert effective["vm.see.ip"] == "yes"
    assert "vm.see-main." in effective
    assert "user.see-main." not in effective
    row = page[page.index('<tr data-acl="vm.see.ip"') :]
    assert "VMs Reader" in row[: row.index("</tr>")]
    summary = re.search(r'<li data-object="vm">.*?</span> (\d+) of (\d+)</li>', page)
    assert summary, "no per-object summary"
    held = sum(1 for name in effective if name.startswith("vm."))
    assert int(summary.group(1)) == held
    assert int(summary.group(2)) > held  # VMs Reader does not hold vm.update.* nor vm.create.

    r = wat.client.post(
        f"/roles/{role}/acls", data={"csrf": csrf, "acl": "user.see-main.", "how": "grant"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/roles/{role}").text
    assert _effective(page)["user.see-main."] == "yes"
    assert 'data-acl="user.see-main."' in _section(page, "granted")

    # granted here and inherited at once: both origins shown
    r = wat.client.post(
        f"/roles/{role}/acls", data={"csrf": csrf, "acl": "vm.see.mac", "how": "grant"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/roles/{role}").text
    assert 'data-acl="vm.see.mac"' in _section(page, "granted")
    row = page[page.index('<tr data-acl="vm.see.mac"') :]
    row = row[: row.index("</tr>")]
    assert "this role" in row
    assert "VMs Reader" in row

    r = wat.client.post(
        f"/roles/{role}/acls", data={"csrf": csrf, "acl": "vm.see.ip", "how": "deny"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/roles/{role}").text
    effective = _effective(page)
    assert effective["vm.see.ip"] == "no"
    assert effective["vm.see.mac"] == "yes"
    assert 'data-acl="vm.see.ip"' in _section(page, "denied")

    r = wat.client.post(
        f"/roles/{role}/acls", data={"csrf": csrf, "acl": "vm.see.ip", "how": "undeny"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/roles/{role}").text
    assert _effective(page)["vm.see.ip"] == "yes"
    assert 'data-acl="vm.see.ip"' not in _section(page, "denied")
    assert 'data-acl="vm.see.ip"' not in _section(page, "granted")  # inherited again

    r = wat.client.post(
        f"/roles/{role}/roles", data={"csrf": csrf, "role": str(reader), "how": "disinherit"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/roles/{role}").text
    assert "vm.see.host" not in _effective(page)
    assert _effective(page)["vm.see.mac"] == "yes"  # granted here: stays
    assert "VMs Reader" not in _section(page, "inherited")


def test_an_unknown_acl_shows_the_apis_reason(wat: Wat) -> None:
    csrf = wat.login()
    role = _create_role(wat, csrf, "careful", wat.world.tenants["A"])
    r = wat.client.post(
        f"/roles/{role}/acls", data={"csrf": csrf, "acl": "vm.fly.away", "how": "grant"}
    )
    assert r.status_code == 400
    assert "there is no ACL &#39;vm.fly.away&#39;" in r.text
    assert "<h1>careful</h1>" in r.text


def test_a_builtin_role_is_read_only(wat: Wat) -> None:
    csrf = wat.login()
    roles = wat.client.get("/roles?q=Root").text
    root = int(re.search(r'<tr data-id="(\d+)"', roles).group(1))  # type: ignore[union-attr]
    page = wat.client.get(f"/roles/{root}").text
    assert 'id="read-only"' in page
    assert 'id="acl-form"' not in page
    assert 'id="edit"' not in page
    assert _effective(page)["vm.update.state"] == "yes"
    assert len(_effective(page)) > 200
    r = wat.client.post(
        f"/roles/{root}/acls", data={"csrf": csrf, "acl": "vm.see.ip", "how": "deny"}
    )
    assert r.status_code == 403
    assert "built in and cannot be changed" in r.text


def test_a_tenant_admin_cannot_open_another_tenants_role(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    other = wat.world.roles["B"]
    r = wat.client.get(f"/roles/{other}")
    assert r.status_code == 404
    assert 'id="missing"' in r.text
    assert "roleB" not in r.text
    r = wat.client.post(f"/roles/{other}", data={"csrf": csrf, "name": "stolen"})
    assert r.status_code == 404
    r = wat.client.post(f"/roles/{other}/delete", data={"csrf": csrf})
    assert r.status_code == 404
    own = wat.client.get(f"/roles/{wat.world.roles['A']}")
    assert own.status_code == 200
    assert "<h1>roleA</h1>" in own.text
    assert "roleA" in wat.client.get("/roles?q=roleA").text
    assert "<tr data-id" not in wat.client.get("/roles?q=roleB").text
    assert wat.client.get("/roles/99999999").status_code == 404


def test_the_list_shows_inherited_roles_and_acl_counts(wat: Wat) -> None:
    wat.login()
    page = wat.client.get("/roles?q=Operator+L1").text
    assert 'data-object="role"' in page
    row = page[page.index("<tr data-id=") :]
    row = row[: row.index("</tr>")]
    assert "QVD Reader" in row
    count = re.search(r'data-field="acls" data-kind="count">(\d+)<', row)
    assert count
    assert int(count.group(1)) > 10


def test_rename_delete_and_form_errors(wat: Wat) -> None:
    csrf = wat.login()
    tenant_a = str(wat.world.tenants["A"])
    r = wat.client.post("/roles/new", data={"csrf": csrf, "name": "x" * 80, "tenant_id": tenant_a})
    assert r.status_code == 400
    assert 'id="create"' in r.text
    assert "role name" in r.text
    assert 'value="' + "x" * 80 + '"' in r.text  # what was typed is kept
    role = _create_role(wat, csrf, "temp role", wat.world.tenants["B"])
    r = wat.client.post(f"/roles/{role}", data={"csrf": csrf, "name": "renamed role"})
    assert r.status_code == 303
    assert "<h1>renamed role</h1>" in wat.client.get(f"/roles/{role}").text
    assert wat.client.post(f"/roles/{role}/delete").status_code == 403  # no anti-CSRF token
    r = wat.client.post(f"/roles/{role}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/roles"
    assert wat.client.get(f"/roles/{role}").status_code == 404


def test_the_editor_speaks_spanish(wat: Wat) -> None:
    csrf = wat.login()
    wat.client.post("/settings/language", data={"csrf": csrf, "language": "es", "next": "/"})
    page = wat.client.get(f"/roles/{wat.world.roles['A']}").text
    for text in (
        "Resultado efectivo",
        "Roles heredados",
        "ACLs concedidas en este rol",
        "Conceder",
    ):
        assert text in page, text
    assert "Effective result" not in page


def test_mass_delete_of_roles_leaves_builtin_ones(wat: Wat) -> None:
    csrf = wat.login()
    mine = _create_role(wat, csrf, "short lived", wat.world.tenants["A"])
    listing = wat.client.get("/roles?q=Operator+L1").text
    builtin = int(re.search(r'<tr data-id="(\d+)"', listing).group(1))  # type: ignore[union-attr]
    data = {"csrf": csrf, "op": "delete", "ids": [str(mine), str(builtin)], "confirmed": "1"}
    done = wat.client.post("/roles/mass", data=data)
    result = done.text.split('id="mass-result"')[1].split("</section>")[0]
    assert "built in and cannot be deleted" in result
    assert wat.client.get(f"/roles/{mine}").status_code == 404
    assert wat.client.get(f"/roles/{builtin}").status_code == 200
