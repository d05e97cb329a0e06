"""The OS flavour pages (server side): list, details with their DIs, tags and VMs,
create, edit and delete through the forms; the API's refusals shown; another tenant's
OSF is not found."""

from __future__ import annotations

import re
from pathlib import Path

from qvd.wat.i18n import catalogue
from qvd.wat.pages import hosts, osfs, properties
from tests.wat.conftest import Wat, created_id


def _section(html: str, table_id: str) -> str:
    return html.split(f'id="{table_id}"')[1].split("</table>")[0]


def test_list_shows_both_tenants_to_the_superadmin(wat: Wat) -> None:
    wat.login()
    page = wat.client.get("/osfs").text
    assert 'data-object="osf"' in page
    for label in ("A", "B"):
        assert f'<tr data-id="{wat.world.osfs[label]}">' in page
        assert f"tenant{label}" in page
    assert 'data-field="memory"' in page
    assert 'data-field="number_of_dis"' in page


def test_tenant_admin_sees_only_their_osfs_without_a_tenant_column(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    page = wat.client.get("/osfs").text
    assert "osfA" in page
    assert "osfB" not in page
    assert 'data-field="tenant_name"' not in page
    assert 'role="alert"' not in page


def test_osf_page_shows_its_di_tags_and_vms(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    r = wat.client.get(f"/osfs/{wat.world.osfs['A']}")
    assert r.status_code == 200
    text = r.text
    assert "<h1>osfA</h1>" in text
    di = wat.world.dis["A"]
    dis = _section(text, "osf-dis")
    assert f'<a href="/dis/{di}">imageA.tar</a>' in dis
    assert "v1" in dis
    assert "published" in dis
    tags = _section(text, "osf-tags")
    found = re.findall(r'data-tag="([^"]+)"', tags)
    assert found == ["default", "head", "v1"]
    assert tags.count(f'href="/dis/{di}"') == 3
    assert f'href="/osfs/{wat.world.osfs["A"]}/tags" id="move-tags"' in text
    vms = _section(text, "osf-vms")
    assert f'<a href="/vms/{wat.world.vms["A"]}">vmA</a>' in vms
    assert 'data-live-action="vm_get_list"' in vms
    assert 'id="edit"' in text
    assert 'id="delete"' in text


def test_create_edit_and_delete_an_osf(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.get("/osfs/new")
    assert r.status_code == 200
    assert 'id="create"' in r.text
    assert 'name="tenant_id"' in r.text
    r = wat.client.post(
        "/osfs/new",
        data={"csrf": csrf, "tenant_id": str(wat.world.tenants["B"]), "name": "debian",
              "memory": "512", "user_storage": "100", "overlay": "1"},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    osf_id = created_id(r.headers["location"], "/osfs")
    page = wat.client.get(r.headers["location"]).text
    assert "<h1>debian</h1>" in page
    assert "Created." in page
    assert "tenantB" in page
    assert 'data-field="memory">512<' in page

    r = wat.client.post(
        f"/osfs/{osf_id}",
        data={"csrf": csrf, "name": "debian12", "memory": "1024", "user_storage": "100",
              "description": "bookworm"},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    page = wat.client.get(f"/osfs/{osf_id}").text
    assert "<h1>debian12</h1>" in page
    assert 'data-field="memory">1024<' in page
    assert "bookworm" in page
    assert 'data-field="overlay">No<' in page

    r = wat.client.post(f"/osfs/{osf_id}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == "/osfs"
    assert wat.client.get(f"/osfs/{osf_id}").status_code == 404


def test_refusals_show_the_apis_message(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    # not a number: said by the WAT, what was typed kept
    r = wat.client.post("/osfs/new", data={"csrf": csrf, "name": "x1", "memory": "lots"})
    assert r.status_code == 400
    assert "must be a whole number" in r.text
    assert 'value="x1"' in r.text
    # the API's own check
    r = wat.client.post("/osfs/new", data={"csrf": csrf, "name": "osfA", "memory": "256"})
    assert r.status_code == 409
    assert 'role="alert"' in r.text
    # an OSF with a DI and a VM cannot go
    r = wat.client.post(f"/osfs/{wat.world.osfs['A']}/delete", data={"csrf": csrf})
    assert r.status_code == 409
    assert "delete them first" in r.text
    assert "<h1>osfA</h1>" in r.text
    # a bad name on edit: the form comes back with the message and the typed values
    r = wat.client.post(
        f"/osfs/{wat.world.osfs['A']}",
        data={"csrf": csrf, "name": "", "memory": "300", "user_storage": "0"},
    )
    assert r.status_code == 400
    assert 'role="alert"' in r.text
    assert 'value="300"' in r.text


def test_tenant_admin_cannot_open_or_change_another_tenants_osf(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    other = wat.world.osfs["B"]
    r = wat.client.get(f"/osfs/{other}")
    assert r.status_code == 404
    assert "osfB" not in r.text
    r = wat.client.post(f"/osfs/{other}", data={"csrf": csrf, "name": "mine", "memory": "256"})
    assert r.status_code == 404
    r = wat.client.post(f"/osfs/{other}/delete", data={"csrf": csrf})
    assert r.status_code == 404
    r = wat.client.post(
        f"/osfs/{other}/properties", data={"csrf": csrf, "key": "propB", "value": "v"}
    )
    assert r.status_code == 404
    wat.login()
    assert "<h1>osfB</h1>" in wat.client.get(f"/osfs/{other}").text


def test_properties_of_an_osf(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    body = {"action": "property_update", "filters": {"id": wat.world.props["A"]},
            "arguments": {"__property_assign__": ["osf"]}}  # fmt: skip
    assert wat.act(csrf, **body)["status"] == 0
    osf = wat.world.osfs["A"]
    r = wat.client.post(
        f"/osfs/{osf}/properties", data={"csrf": csrf, "key": "propA", "value": "7"}
    )
    assert r.status_code == 303
    page = wat.client.get(f"/osfs/{osf}").text
    assert '<tr data-key="propA">' in page


def test_osf_page_in_spanish(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    wat.client.post("/settings/language", data={"csrf": csrf, "language": "es", "next": "/"})
    page = wat.client.get(f"/osfs/{wat.world.osfs['A']}").text
    assert '<html lang="es">' in page
    for text in ("Etiquetas", "Imágenes de disco de este sistema operativo", "Mover etiquetas"):
        assert text in page
    r = wat.client.post("/osfs/new", data={"csrf": csrf, "name": "x1", "memory": "mucha"})
    assert "Memoria (MB) debe ser un número entero" in r.text


def test_every_text_of_the_infra_pages_has_spanish() -> None:
    wat_dir = Path(__file__).resolve().parents[2] / "src/qvd/wat"
    texts: set[str] = set()
    for folder in ("hosts", "osfs", "properties", "infra"):
        for template in (wat_dir / "templates" / folder).glob("*.html"):
            source = template.read_text(encoding="utf-8")
            texts |= set(re.findall(r'_\("([^"]+)"\)', source))
            texts |= set(re.findall(r"_\('([^']+)'\)", source))
    for view in (hosts.VIEW, osfs.VIEW, properties.VIEW):
        texts |= {view.title, *(c.label for c in view.columns), *(m.label for m in view.mass)}
    texts |= {label for _, label in properties.OBJECTS}
    spanish = catalogue("es")
    assert sorted(t for t in texts if t not in spanish) == []


def test_mass_set_property_on_osfs(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    wat.assign_property(csrf, "osf")
    osf = str(wat.world.osfs["A"])
    r = wat.mass(csrf, "/osfs", "set_property", [osf], key="propA", value="blue")
    assert r.status_code == 200, r.text
    assert "1 done" in r.text
    page = wat.client.get(f"/osfs/{osf}").text
    assert '<tr data-key="propA">' in page
    assert "<td>blue</td>" in page
