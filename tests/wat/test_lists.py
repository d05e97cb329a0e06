"""The list engine (server side): search and per-column filters, sort, paging, the
column choice saved per administrator and as the tenant's default, mass actions (the
confirmation step, success, QVD's 1200 with per-object messages, values typed by the
administrator) and the CSV export."""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from typing import Any

import pytest

from qvd.wat.lists.query import ListQuery
from qvd.wat.pages.vms import VIEW as VM_VIEW
from tests.wat.conftest import Wat
from tests.wat.listviews import wat

__all__ = ["wat"]


def make_vms(wat: Wat, csrf: str, count: int, prefix: str = "many") -> list[int]:
    ids = []
    for i in range(count):
        args = {"name": f"{prefix}{i:02d}", "user_id": wat.world.users["A"],
                "osf_id": wat.world.osfs["A"]}  # fmt: skip
        answer = wat.act(csrf, "vm_create", arguments=args)
        assert answer["status"] == 0, answer
        ids.append(int(answer["rows"][0]["id"]))
    return ids


def row_names(html: str) -> list[str]:
    return re.findall(r'<td data-field="name"[^>]*><a href="[^"]*">([^<]+)</a>', html)


def vm_rows(wat: Wat, csrf: str, ids: list[int], fields: list[str]) -> dict[int, dict[str, Any]]:
    answer = wat.act(csrf, "vm_get_list", filters={"id": ids}, fields=["id", *fields])
    assert answer["status"] == 0, answer
    return {int(r["id"]): r for r in answer["rows"]}


# ---- query ----------------------------------------------------------------------------------
def test_query_string_is_bounded_and_unknown_filters_dropped() -> None:
    params = {"q": "x" * 500, "sort": "--name", "p": "99999999", "f.nosuch": "1",
              "f.name": "a\x00b", "f.blocked": "maybe", "f.state": "running"}  # fmt: skip
    query = ListQuery.parse(params, VM_VIEW)
    assert len(query.q) == 200
    assert query.sort == ""
    assert query.page == 1
    assert query.columns == {"name": "ab", "state": "running"}
    assert ListQuery.parse({"f.blocked": "true"}, VM_VIEW).columns == {"blocked": "true"}
    assert "f.name=ab" in query.url("/vms")


def test_column_filters_combine_with_the_free_text(wat: Wat) -> None:
    csrf = wat.login()
    make_vms(wat, csrf, 3, "alpha")
    make_vms(wat, csrf, 2, "beta")
    assert sorted(row_names(wat.client.get("/vms?f.name=alph").text)) == [
        "alpha00", "alpha01", "alpha02",
    ]  # fmt: skip
    page = wat.client.get("/vms?q=a0&f.name=alpha").text
    assert sorted(row_names(page)) == ["alpha00", "alpha01", "alpha02"]
    assert row_names(wat.client.get("/vms?q=01&f.name=alpha").text) == ["alpha01"]
    # LIKE's own characters are text, not wildcards
    assert row_names(wat.client.get("/vms?f.name=a_p").text) == []
    # exact on ids, choice on booleans
    vm_a = wat.world.vms["A"]
    assert row_names(wat.client.get(f"/vms?f.id={vm_a}").text) == ["vmA"]
    wat.act(csrf, "vm_update", filters={"id": vm_a}, arguments={"blocked": True})
    assert row_names(wat.client.get("/vms?f.blocked=true").text) == ["vmA"]
    assert "vmA" not in row_names(wat.client.get("/vms?f.blocked=false").text)
    # the filter is kept in the form and in the sort and page links
    page = wat.client.get("/vms?f.name=alpha").text
    assert 'id="filter-name"' in page
    assert 'value="alpha"' in page
    assert "f.name=alpha&amp;sort=name" in page or "sort=name&amp;f.name=alpha" in page


def test_a_value_the_api_refuses_shows_its_message(wat: Wat) -> None:
    wat.login()
    r = wat.client.get("/vms?f.id=notanumber")
    assert r.status_code == 400
    assert "is not a valid int" in r.text
    assert 'id="filter-id"' in r.text  # the form stays, with what was typed


def test_sort_and_paging_with_the_page_size(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    make_vms(wat, csrf, 12)
    first = wat.client.get("/vms?f.name=many&sort=-name").text
    assert row_names(first) == [f"many{i:02d}" for i in range(11, 1, -1)]
    assert "Page 1 of 2" in first
    assert 'rel="next"' in first
    assert 'rel="last"' in first
    second = wat.client.get("/vms?f.name=many&sort=-name&p=2").text
    assert row_names(second) == ["many01", "many00"]
    assert "Page 2 of 2" in second
    assert 'rel="prev"' in second
    # htmx asks for the region only
    region = wat.client.get(
        "/vms?p=2&f.name=many", headers={"HX-Request": "true", "HX-Target": "list-region"}
    ).text
    assert "<html" not in region
    assert 'id="list"' in region
    assert "Page 2 of 2" in region


# ---- column choice --------------------------------------------------------------------------
def columns_of(html: str) -> list[str]:
    head = html.split("<thead>")[1].split("</thead>")[0]
    return re.findall(r'<th scope="col" data-field="([^"]+)"', head)


def test_column_choice_is_saved_per_admin_and_reset(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    assert "description" not in columns_of(wat.client.get("/test-vms").text)
    wanted = ["id", "name", "state", "description"]
    r = wat.client.post("/test-vms/columns", data={"csrf": csrf, "col": wanted, "qs": "f.name=vm"})
    assert r.status_code == 303
    assert r.headers["location"] == "/test-vms?f.name=vm"
    page = wat.client.get("/test-vms").text
    assert columns_of(page) == wanted
    assert '<td data-field="description"' in page
    stored = wat.act(csrf, "admin_view_get_list", filters={"qvd_object": "vm"})
    hidden = {r["field"] for r in stored["rows"] if not r["visible"]}
    assert {"user_name", "osf_name", "blocked"} <= hidden
    # the /vms list reads the same stored choice (one per kind of object)
    assert "user_name" not in columns_of(wat.client.get("/vms").text)
    # another administrator of the tenant still sees the defaults
    other = Wat(wat.client, wat.world)
    wat.client.cookies.clear()
    other.login("root", "*")
    assert "user_name" in columns_of(wat.client.get("/vms").text)
    wat.client.cookies.clear()
    csrf = wat.login("adminA", "tenantA")
    r = wat.client.post("/test-vms/columns", data={"csrf": csrf, "reset": "1"})
    assert r.status_code == 303
    assert "description" not in columns_of(wat.client.get("/test-vms").text)
    assert "user_name" in columns_of(wat.client.get("/test-vms").text)


def test_tenant_default_columns_and_no_empty_choice(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    page = wat.client.get("/vms").text
    assert 'id="col-scope"' in page  # adminA may change the tenant's views
    r = wat.client.post(
        "/vms/columns", data={"csrf": csrf, "col": ["name", "state"], "scope": "tenant"}
    )
    assert r.status_code == 303
    rows = wat.act(csrf, "tenant_view_get_list", filters={"qvd_object": "vm"})["rows"]
    assert {r["field"] for r in rows if r["visible"]} == {"name", "state"}
    assert columns_of(wat.client.get("/vms").text) == ["name", "state"]
    refused = wat.client.post("/vms/columns", data={"csrf": csrf})
    assert refused.status_code == 400
    assert "Keep at least one column." in refused.text
    assert wat.client.post("/vms/columns", data={"col": ["name"]}).status_code == 403


# ---- mass actions ---------------------------------------------------------------------------
def test_mass_block_needs_the_token_and_blocks_the_selection(wat: Wat) -> None:
    csrf = wat.login()
    ids = make_vms(wat, csrf, 3, "blk")
    data = {"op": "block", "ids": [str(i) for i in ids], "qs": "f.name=blk"}
    assert wat.client.post("/test-vms/mass", data=data).status_code == 403
    r = wat.client.post("/test-vms/mass", data={**data, "csrf": csrf})
    assert r.status_code == 200, r.text
    assert "Block: 3 done" in r.text
    assert sorted(row_names(r.text)) == ["blk00", "blk01", "blk02"]  # the filter kept
    assert all(row["blocked"] for row in vm_rows(wat, csrf, ids, ["blocked"]).values())


def test_mass_action_checks_its_request(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.post("/test-vms/mass", data={"csrf": csrf, "op": "block"})
    assert r.status_code == 400
    assert "Select at least one row." in r.text
    r = wat.client.post("/test-vms/mass", data={"csrf": csrf, "op": "nosuch", "ids": "1"})
    assert r.status_code == 400
    assert "Choose an action." in r.text
    vm_a = str(wat.world.vms["A"])
    data = {"csrf": csrf, "op": "describe", "ids": vm_a, "in.describe.description": "x" * 41}
    r = wat.client.post("/test-vms/mass", data=data)
    assert r.status_code == 400
    assert "at most 40" in r.text


def test_mass_action_with_typed_values(wat: Wat) -> None:
    csrf = wat.login()
    vm_a, vm_b = wat.world.vms["A"], wat.world.vms["B"]
    data = {"csrf": csrf, "op": "describe", "ids": [str(vm_a), str(vm_b)],
            "in.describe.description": "  =lab desk "}  # fmt: skip
    r = wat.client.post("/test-vms/mass", data=data)
    assert r.status_code == 200
    assert "Describe: 2 done" in r.text
    rows = vm_rows(wat, csrf, [vm_a, vm_b], ["description"])
    assert {r["description"] for r in rows.values()} == {"=lab desk"}


def test_mass_partial_failure_names_each_failed_object(wat: Wat) -> None:
    csrf = wat.login()
    vm_a, vm_b = wat.world.vms["A"], wat.world.vms["B"]
    assert wat.act(csrf, "vm_start", filters={"id": vm_a})["status"] == 0
    r = wat.client.post(
        "/test-vms/mass", data={"csrf": csrf, "op": "start", "ids": [str(vm_a), str(vm_b)]}
    )
    assert r.status_code == 200
    assert "the action failed for 1 of 2 objects (1 done)" in r.text
    result = r.text.split('id="mass-result"')[1].split("</section>")[0]
    assert f'data-id="{vm_a}"' in result
    assert "vmA" in result
    assert "only a stopped VM can be started" in result
    assert "vmB" not in result
    assert vm_rows(wat, csrf, [vm_b], ["vm_cmd"])[vm_b]["vm_cmd"] == "start"


def test_delete_asks_first_then_deletes(wat: Wat) -> None:
    csrf = wat.login()
    ids = make_vms(wat, csrf, 2, "gone")
    data = {"csrf": csrf, "op": "delete", "ids": [str(i) for i in ids], "qs": "q=gone"}
    ask = wat.client.post("/test-vms/mass", data=data)
    assert ask.status_code == 200
    assert 'id="confirm"' in ask.text
    assert "gone00" in ask.text
    assert "gone01" in ask.text
    assert len(vm_rows(wat, csrf, ids, ["name"])) == 2  # nothing deleted yet
    assert 'href="/test-vms?q=gone"' in ask.text  # cancel goes back to the same list
    done = wat.client.post("/test-vms/mass", data={**data, "confirmed": "1"})
    assert "Delete: 2 done" in done.text
    assert vm_rows(wat, csrf, ids, ["name"]) == {}


def test_mass_action_cannot_reach_another_tenants_objects(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    vm_b = wat.world.vms["B"]
    r = wat.client.post("/test-vms/mass", data={"csrf": csrf, "op": "block", "ids": str(vm_b)})
    assert r.status_code == 404
    assert "no vm matches the filters" in r.text
    wat.client.cookies.clear()
    root = wat.login()
    assert vm_rows(wat, root, [vm_b], ["blocked"])[vm_b]["blocked"] in (0, False)


def test_mass_set_property_builds_its_arguments(wat: Wat) -> None:
    csrf = wat.login()
    vm_a, vm_b = wat.world.vms["A"], wat.world.vms["B"]
    data = {"csrf": csrf, "op": "set_property", "ids": [str(vm_a), str(vm_b)],
            "in.set_property.key": "propA", "in.set_property.value": "=v1"}  # fmt: skip
    wat.assign_property(csrf, "vm")
    r = wat.client.post("/test-vms/mass", data=data)
    assert "the action failed for 1 of 2 objects (1 done)" in r.text
    failed = r.text.split('id="mass-result"')[1].split("</section>")[0]
    assert "vmB" in failed
    assert "vmA" not in failed
    rows = vm_rows(wat, csrf, [vm_a, vm_b], ["properties"])
    assert rows[vm_a]["properties"] == {"propA": "=v1"}
    assert rows[vm_b]["properties"] in ({}, None)


# ---- CSV ------------------------------------------------------------------------------------
def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_holds_every_matching_row_of_the_shown_columns(
    wat: Wat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qvd.wat.lists.export.CHUNK", 4)  # several chunks
    csrf = wat.login()
    make_vms(wat, csrf, 11, "csv")
    r = wat.client.get("/vms.csv?f.name=csv&sort=-name")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="vms.csv"'
    rows = read_csv(r.text)
    assert rows[0][:3] == ["Id", "Name", "User"]
    assert [row[1] for row in rows[1:]] == [f"csv{i:02d}" for i in range(10, -1, -1)]
    assert "export-csv" in wat.client.get("/vms?f.name=csv").text
    link = re.search(r'id="export-csv" href="([^"]+)"', wat.client.get("/vms?f.name=csv").text)
    assert link
    assert urllib.parse.unquote(link.group(1).replace("&amp;", "&")) == "/vms.csv?f.name=csv"


def test_csv_defuses_formulas(wat: Wat) -> None:
    csrf = wat.login()
    vm_a = wat.world.vms["A"]
    formula = '=HYPERLINK("http://evil.example","x")'
    wat.act(csrf, "vm_update", filters={"id": vm_a}, arguments={"description": formula})
    shown = {"csrf": csrf, "col": ["id", "name", "description"]}
    assert wat.client.post("/test-vms/columns", data=shown).status_code == 303
    rows = read_csv(wat.client.get(f"/test-vms.csv?f.id={vm_a}").text)
    assert rows == [["Id", "Name", "Description"], [str(vm_a), "vmA", "'" + formula]]


def test_tenant_admins_csv_holds_only_their_tenant(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    names = [row[1] for row in read_csv(wat.client.get("/vms.csv").text)[1:]]
    assert names == ["vmA"]


def test_csv_refusal_shows_the_message(wat: Wat) -> None:
    wat.login()
    r = wat.client.get("/vms.csv?f.id=x")
    assert r.status_code == 400
    assert "is not a valid int" in r.text


def test_state_choice_filter(wat: Wat) -> None:
    wat.login()
    page = wat.client.get("/test-vms").text
    assert '<select id="filter-state" class="filter-choice" name="f.state">' in page
    assert '<option value="running">Running</option>' in page
    assert sorted(row_names(wat.client.get("/test-vms?f.state=stopped").text)) == ["vmA", "vmB"]
    assert row_names(wat.client.get("/test-vms?f.state=running").text) == []
    # a value that is not one of the choices is dropped, not sent
    assert len(row_names(wat.client.get("/test-vms?f.state=bogus").text)) == 2


def test_reloading_an_answer_goes_back_to_the_list(wat: Wat) -> None:
    wat.login()
    for path in ("/vms/mass", "/vms/columns"):
        r = wat.client.get(path)
        assert r.status_code == 303
        assert r.headers["location"] == "/vms"
