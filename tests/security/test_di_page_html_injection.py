"""HTML injection through a disk image's free text: a DI's description and property
values are data an administrator types; the WAT's DI page (and the edit form that
shows them again) must show them as text, never as markup (Jinja autoescaping, no
``|safe``). Fails if the page ever marks them safe."""

from __future__ import annotations

from tests.wat.conftest import Wat, wat

__all__ = ["wat"]

PAYLOAD = '</textarea><script>alert("di")</script><img src=x onerror=alert(1)>'


def test_description_and_properties_show_as_text(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    di = wat.world.dis["A"]
    saved = wat.client.post(f"/dis/{di}", data={"csrf": csrf, "description": PAYLOAD})
    assert saved.status_code == 303, saved.text
    r = wat.client.post(
        "/api/v1/properties",
        json={"key": "note", "objects": ["di"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code in (200, 201), r.text
    r = wat.client.patch(
        f"/api/v1/dis/{di}",
        json={"properties_changes": {"set": {"note": PAYLOAD}}},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    page = wat.client.get(f"/dis/{di}").text
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "</textarea><script>" not in page
    assert (
        page.count("&lt;script&gt;alert(&#34;di&#34;)&lt;/script&gt;") >= 3
    )  # fact, form, property
