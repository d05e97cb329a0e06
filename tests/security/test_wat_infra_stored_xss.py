"""Attack test: markup stored in the names, descriptions, property keys and property
values an administrator may type (OSF description, property key and description, a
node's property value) must come back as text on the WAT's list and detail pages,
never as markup (Jinja's autoescape, no ``|safe`` on data). Against the real API and
PostgreSQL (in-process ASGI)."""

from __future__ import annotations

from tests.wat.conftest import Wat
from tests.wat.conftest import wat as wat

PAYLOAD = "<script>alert(1)</script>"
KEY = "<i>k</i>"  # a key has no blank and no "="


def test_markup_typed_into_infra_objects_is_shown_as_text(wat: Wat) -> None:
    csrf = wat.login()
    osf = wat.world.osfs["A"]
    r = wat.client.post(
        f"/osfs/{osf}", data={"csrf": csrf, "name": "osfA", "memory": "256", "description": PAYLOAD}
    )
    assert r.status_code == 303, r.text
    r = wat.client.post(
        "/properties/new",
        data={"csrf": csrf, "key": KEY, "description": PAYLOAD, "tenant_id": "0",
              "objects": ["host"]},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    prop_page = r.headers["location"].split("?")[0]
    r = wat.client.post(
        f"/hosts/{wat.world.host}/properties", data={"csrf": csrf, "key": KEY, "value": PAYLOAD}
    )
    assert r.status_code == 303, r.text
    for path in (f"/osfs/{osf}", "/properties", prop_page, f"/hosts/{wat.world.host}"):
        html = wat.client.get(path).text
        assert "<script>alert" not in html, path
        assert KEY not in html, path
        escaped = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;i&gt;k&lt;/i&gt;")
        assert any(e in html for e in escaped), path
