"""The configuration editor (server side): tokens grouped and searchable with default,
database and effective values; set (types checked by the API, its refusal shown),
reset; secrets never in the page; a superadmin's per-tenant layer."""

from __future__ import annotations

import re

from tests.wat.conftest import Wat

SECRET = "hunter2-very-secret"


def _row(html: str, key: str) -> dict[str, str]:
    match = re.search(rf'<tr data-id="{re.escape(key)}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"{key} is not listed"
    cells = re.findall(r'<td data-field="(\w+)">(.*?)</td>', match.group(1), re.S)
    return {name: re.sub(r"<[^>]+>", "", text).strip() for name, text in cells}


def test_tokens_grouped_with_default_database_and_effective_values(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.get("/configs")
    assert r.status_code == 200
    assert 'data-object="config"' in r.text
    assert '<tbody data-prefix="l7r">' in r.text
    assert _row(r.text, "l7r.port") == {
        "key": "l7r.port", "kind": "int", "default_value": "8443", "stored": "",
        "effective": "8443",
    }  # fmt: skip
    assert "database.password" not in r.text  # node-local tokens are not listed
    saved = wat.client.post("/configs/l7r.port", data={"csrf": csrf, "value": "9443"})
    assert saved.status_code == 303
    assert saved.headers["location"] == "/configs/l7r.port?saved=1"
    page = wat.client.get(saved.headers["location"]).text
    assert "<h1>l7r.port</h1>" in page
    assert "Saved." in page
    assert 'id="config-edit"' in page
    assert 'value="9443"' in page
    row = _row(wat.client.get("/configs").text, "l7r.port")
    assert (row["stored"], row["effective"], row["default_value"]) == ("9443", "9443", "8443")


def test_search_and_group_filter(wat: Wat) -> None:
    wat.login()
    found = wat.client.get("/configs", params={"q": "totp.leeway"}).text
    keys = re.findall(r'<tr data-id="([^"]+)"', found)
    assert keys == ["l7r.auth.plugin.totp.leeway"]
    grouped = wat.client.get("/configs", params={"prefix": "client"}).text
    keys = re.findall(r'<tr data-id="([^"]+)"', grouped)
    assert keys
    assert all(k.startswith("client.") for k in keys)
    assert '<option value="client" selected>' in grouped
    none = wat.client.get("/configs", params={"q": "%_"}).text
    assert "No rows match." in none


def test_a_wrong_type_is_refused_with_the_apis_message(wat: Wat) -> None:
    csrf = wat.login()
    r = wat.client.post("/configs/l7r.port", data={"csrf": csrf, "value": "many"})
    assert r.status_code == 400
    assert "l7r.port: &#39;many&#39; is not an integer" in r.text
    assert 'value="many"' in r.text  # what was typed stays in the form
    assert _row(wat.client.get("/configs").text, "l7r.port")["stored"] == ""
    r = wat.client.post("/configs/no.such.token", data={"csrf": csrf, "value": "1"})
    assert r.status_code == 404
    assert "There is no configuration token &#39;no.such.token&#39;." in r.text
    assert wat.client.get("/configs/no.such.token").status_code == 404


def test_reset_to_default(wat: Wat) -> None:
    csrf = wat.login()
    wat.client.post("/configs/client.link", data={"csrf": csrf, "value": "lan"})
    page = wat.client.get("/configs/client.link").text
    assert 'id="config-reset"' in page
    r = wat.client.post("/configs/client.link/reset", data={"csrf": csrf})
    assert r.status_code == 303
    page = wat.client.get(r.headers["location"]).text
    assert "Reset to its default." in page
    assert 'id="config-reset"' not in page
    again = wat.client.post("/configs/client.link/reset", data={"csrf": csrf})
    assert again.status_code == 409
    assert "already has its default value" in again.text


def test_secrets_never_reach_the_page(wat: Wat) -> None:
    csrf = wat.login()
    key = "auth.ldap.bindpass"
    r = wat.client.post(f"/configs/{key}", data={"csrf": csrf, "value": SECRET})
    assert r.status_code == 303
    listed = wat.client.get("/configs", params={"prefix": "auth"}).text
    assert _row(listed, key)["stored"] == "••••"
    page = wat.client.get(f"/configs/{key}").text
    assert SECRET not in page
    assert SECRET not in listed
    assert 'type="password" value=""' in page
    refused = wat.client.post(
        f"/configs/{key}", data={"csrf": csrf, "value": SECRET + "${nodename}"}
    )
    assert refused.status_code == 400
    assert SECRET not in refused.text  # a refused secret is not echoed back either


def test_per_tenant_layer_for_superadmins(wat: Wat) -> None:
    csrf = wat.login()
    a = wat.world.tenants["A"]
    key = "l7r.auth.plugin.default.separators"
    wat.client.post(f"/configs/{key}", data={"csrf": csrf, "value": "@"})
    layer = wat.client.get("/configs", params={"tenant": a}).text
    assert f'<option value="{a}" selected>' in layer
    assert "l7r.port" not in re.findall(r'<tr data-id="([^"]+)"', layer)  # global only
    row = _row(layer, key)
    assert (row["stored"], row["effective"]) == ("", "@ (global)")
    r = wat.client.post(f"/configs/{key}", data={"csrf": csrf, "value": "#", "tenant": str(a)})
    assert r.status_code == 303
    assert r.headers["location"] == f"/configs/{key}?saved=1&tenant={a}"
    row = _row(wat.client.get("/configs", params={"tenant": a}).text, key)
    assert (row["stored"], row["effective"]) == ("#", "#")
    assert _row(wat.client.get("/configs").text, key)["stored"] == "@"
    refused = wat.client.post("/configs/l7r.port", data={"csrf": csrf, "value": "1",
                                                         "tenant": str(a)})  # fmt: skip
    assert refused.status_code == 403
    assert "is global: it cannot be set per tenant" in refused.text


def test_tenant_admin_edits_only_their_tenants_tokens(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    r = wat.client.get("/configs", params={"tenant": str(wat.world.tenants["B"])})
    assert r.status_code == 200
    assert 'id="config-tenant"' not in r.text  # no layer choice
    key = "l7r.auth.plugin.default.separators"
    assert key in r.text
    assert "l7r.port" not in r.text
    other = str(wat.world.tenants["B"])
    done = wat.client.post(f"/configs/{key}", data={"csrf": csrf, "value": "%", "tenant": other})
    assert done.status_code == 303
    assert "tenant=" not in done.headers["location"]
    wat.client.post("/logout", data={"csrf": csrf})
    wat.login()
    b_layer = wat.client.get("/configs", params={"tenant": wat.world.tenants["B"]}).text
    a_layer = wat.client.get("/configs", params={"tenant": wat.world.tenants["A"]}).text
    assert _row(b_layer, key)["stored"] == ""
    assert _row(a_layer, key)["stored"] == "%"


def test_the_header_tenant_choice_picks_the_layer(wat: Wat) -> None:
    csrf = wat.login()
    a = wat.world.tenants["A"]
    wat.client.post("/settings/tenant", data={"csrf": csrf, "tenant": str(a), "next": "/"})
    key = "l7r.auth.plugin.default.separators"
    layer = wat.client.get("/configs").text
    assert f'<option value="{a}" selected>' in layer
    assert "l7r.port" not in re.findall(r'<tr data-id="([^"]+)"', layer)
    glob = wat.client.get("/configs", params={"tenant": ""}).text
    assert "l7r.port" in re.findall(r'<tr data-id="([^"]+)"', glob)
    r = wat.client.post(f"/configs/{key}", data={"csrf": csrf, "value": "+"})
    assert r.headers["location"] == f"/configs/{key}?saved=1&tenant="
    assert _row(wat.client.get("/configs", params={"tenant": ""}).text, key)["stored"] == "+"
    assert _row(layer, key)["stored"] == ""
