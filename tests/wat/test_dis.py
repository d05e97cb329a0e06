"""The WAT's disk image pages, server side: the list and a DI's page in the tenant's
scope, editing and deleting, the upload and staging import the page's script sends to
the API (session cookie + X-CSRF-Token), and the OSF's tag board: moves by the form,
the preview of the VMs a move affects, the expiry set on them, roll forward and back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qvd.db.models import Di, DiTag, VmRuntime
from tests.api.services.test_dis import tarball
from tests.wat.conftest import Wat, set_vm_runtime

STORAGE = "storage"


def upload(wat: Wat, csrf: str | None, osf_id: int, version: str, **extra: Any) -> httpx.Response:
    headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
    return wat.client.post(
        "/api/v1/dis/upload",
        headers=headers,
        data={"arguments": json.dumps({"osf_id": osf_id, "version": version, **extra})},
        files={"file": ("desk.tar.gz", tarball(), "application/octet-stream")},
    )


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """The storage root of the ``wat`` fixture's API (``api_config``)."""
    return tmp_path / "storage"


def test_list_shows_the_tenants_dis_only(wat: Wat) -> None:
    wat.login()
    every = wat.client.get("/dis")
    assert every.status_code == 200
    assert 'data-object="di"' in every.text
    assert "imageA.tar" in every.text
    assert "imageB.tar" in every.text
    wat.login("adminA", "tenantA")
    own = wat.client.get("/dis").text
    assert "imageA.tar" in own
    assert "imageB.tar" not in own
    other = wat.client.get(f"/dis/{wat.world.dis['B']}")
    assert other.status_code == 404
    assert "Disk image not found" in other.text
    assert wat.client.get("/dis/99999").status_code == 404


def test_detail_shows_facts_tags_and_the_vms_using_it(wat: Wat) -> None:
    wat.login("adminA", "tenantA")
    r = wat.client.get(f"/dis/{wat.world.dis['A']}")
    assert r.status_code == 200
    assert re.search(r"<h1>imageA\.tar</h1>", r.text)
    tags = r.text.split('id="di-tags"')[1].split("</ul>")[0]
    assert "default" in tags
    assert "head" in tags
    assert "v1" in tags
    vms = r.text.split('id="di-vms"')[1].split("</table>")[0]
    assert "vmA" in vms  # its tag (default) points here
    assert 'id="edit"' in r.text
    assert re.search(r"<dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r.text)
    assert 'id="delete"' in r.text


def test_edit_blocks_the_di_and_needs_the_csrf_token(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    di = wat.world.dis["A"]
    assert wat.client.post(f"/dis/{di}", data={"blocked": "1"}).status_code == 403
    r = wat.client.post(
        f"/dis/{di}", data={"csrf": csrf, "blocked": "1", "description": "gold image"}
    )
    assert r.status_code == 303, r.text
    page = wat.client.get(f"/dis/{di}").text
    assert "gold image" in page
    assert re.search(r'id="f-blocked"[^>]*checked', page)
    bad = wat.client.post(
        f"/dis/{di}", data={"csrf": csrf, "expiration_time_soft": "soon", "description": "kept"}
    )
    assert bad.status_code == 400
    assert "whole seconds" in bad.text
    assert ">kept</textarea>" in bad.text  # what the admin typed stays


def test_delete_refused_shows_the_apis_reason_then_works(wat: Wat, storage: Path) -> None:
    csrf = wat.login("adminA", "tenantA")
    di = wat.world.dis["A"]
    refused = wat.client.post(f"/dis/{di}/delete", data={"csrf": csrf})
    assert refused.status_code == 409  # vmA boots it through its tag
    assert "move the tags first" in refused.text
    fresh = upload(wat, csrf, wat.world.osfs["A"], "v2")
    assert fresh.status_code == 201, fresh.text
    new_id = fresh.json()["id"]
    r = wat.client.post(f"/dis/{new_id}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert wat.client.get(f"/dis/{new_id}").status_code == 404
    assert not ((storage / "images") / f"{new_id}-desk.tar.gz").exists()


def test_upload_with_cookie_and_csrf_header_creates_the_di(wat: Wat, storage: Path) -> None:
    csrf = wat.login("adminA", "tenantA")
    form = wat.client.get("/dis/new").text
    assert 'id="create"' in form
    assert 'id="upload-progress"' in form
    assert 'id="upload-cancel"' in form
    assert "<noscript>" in form
    assert "osfB" not in form  # only the tenant's OSFs to choose from
    r = upload(wat, csrf, wat.world.osfs["A"], "v2")
    assert r.status_code == 201, r.text
    di_id = r.json()["id"]
    assert ((storage / "images") / f"{di_id}-desk.tar.gz").read_bytes() == tarball()
    page = wat.client.get(f"/dis/{di_id}").text
    assert "published" in page
    assert "v2" in page


def test_upload_without_the_csrf_header_is_refused_and_leaves_nothing(
    wat: Wat, storage: Path, engine: Engine
) -> None:
    wat.login("adminA", "tenantA")
    r = upload(wat, None, wat.world.osfs["A"], "v2")
    assert r.status_code in (401, 403), r.text
    assert "X-CSRF-Token" in r.json()["message"]
    wrong = upload(wat, "not-the-token", wat.world.osfs["A"], "v2")
    assert wrong.status_code in (401, 403)
    with Session(engine) as s:
        assert s.scalars(select(Di.version).where(Di.osf_id == wat.world.osfs["A"])).all() == ["v1"]
    folder = storage / "images"
    assert not folder.exists() or not list(folder.iterdir())


def test_upload_refusal_is_the_apis_message(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    r = upload(wat, csrf, wat.world.osfs["A"], "v1")  # v1 is already a tag of the OSF
    assert r.status_code == 409, r.text
    assert "already exists" in r.json()["message"]


def test_staging_page_lists_files_and_the_api_imports_one(wat: Wat, storage: Path) -> None:
    csrf = wat.login("adminA", "tenantA")
    missing = wat.client.get("/dis/staging")
    assert missing.status_code == 200
    assert "does not exist" in missing.text  # the API's reason
    folder = storage / "staging" / str(wat.world.tenants["A"])
    folder.mkdir(parents=True)
    (folder / "gold.tar.gz").write_bytes(tarball())
    page = wat.client.get("/dis/staging").text
    assert "gold.tar.gz" in page
    assert 'id="staging-import"' in page
    body = {"disk_image": "gold.tar.gz", "osf_id": wat.world.osfs["A"], "version": "gold"}
    assert wat.client.post("/api/v1/dis/staging", json=body).status_code in (401, 403)
    r = wat.client.post("/api/v1/dis/staging", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    assert "gold" in wat.client.get(f"/dis/{r.json()['id']}").text


def _tag_holder(wat: Wat, engine: Engine, tag: str) -> int | None:
    with Session(engine) as s:
        return s.scalar(
            select(DiTag.di_id).where(DiTag.osf_id == wat.world.osfs["A"], DiTag.tag == tag)
        )


def test_tag_board_preview_move_with_expiry_and_roll_back(wat: Wat, engine: Engine) -> None:
    csrf = wat.login("adminA", "tenantA")
    osf, old = wat.world.osfs["A"], wat.world.dis["A"]
    new = upload(wat, csrf, osf, "v2").json()["id"]
    set_vm_runtime(
        engine, wat.world.vms["A"], vm_state="running", current_di_id=old, host_id=wat.world.host
    )
    board = wat.client.get(f"/osfs/{osf}/tags")
    assert board.status_code == 200
    assert f'data-di-id="{old}"' in board.text
    assert f'data-di-id="{new}"' in board.text
    assert 'id="tag-move"' in board.text
    assert 'id="tag-move-submit"' in board.text
    preview = wat.client.get(f"/osfs/{osf}/tags/preview", params={"tag": "default", "di_id": new})
    assert preview.status_code == 200
    assert 'id="tag-preview"' in preview.text
    assert "vmA" in preview.text.split('id="tag-preview-vms"')[1]
    head_only = wat.client.get(f"/osfs/{osf}/tags/preview", params={"tag": "head", "di_id": new})
    assert "vmA" not in head_only.text  # vmA follows default, not head
    same = wat.client.get(f"/osfs/{osf}/tags/preview", params={"tag": "default", "di_id": old})
    assert "vmA" not in same.text  # already runs that DI

    r = wat.client.post(
        f"/osfs/{osf}/tags",
        data={"csrf": csrf, "tag": "default", "di_id": str(new),
              "expire_soft": "2031-01-02T03:04", "expire_hard": "2031-01-03T03:04"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert "is now on version v2" in r.text
    assert "Expiry set on 1 VMs" in r.text
    assert _tag_holder(wat, engine, "default") == new
    with Session(engine) as s:
        rt = s.get_one(VmRuntime, wat.world.vms["A"])
        assert rt.vm_expiration_soft is not None
        assert rt.vm_expiration_hard is not None
        assert rt.vm_expiration_soft.isoformat().startswith("2031-01-02T03:04")
        assert rt.vm_expiration_hard.isoformat().startswith("2031-01-03T03:04")

    back = wat.client.post(f"/osfs/{osf}/tags", data={"csrf": csrf, "tag": "default",
                                                     "di_id": str(old)})  # fmt: skip
    assert back.status_code == 200
    assert "is now on version v1" in back.text
    assert _tag_holder(wat, engine, "default") == old


def test_tag_move_refusals_and_custom_tags(wat: Wat, engine: Engine) -> None:
    csrf = wat.login("adminA", "tenantA")
    osf, old = wat.world.osfs["A"], wat.world.dis["A"]
    new = upload(wat, csrf, osf, "v2").json()["id"]
    assert (
        wat.client.post(f"/osfs/{osf}/tags", data={"tag": "head", "di_id": old}).status_code == 403
    )
    fixed = wat.client.post(f"/osfs/{osf}/tags", data={"csrf": csrf, "tag": "v1", "di_id": new})
    assert fixed.status_code == 409
    assert "fixed" in fixed.text
    other = wat.client.post(
        f"/osfs/{osf}/tags", data={"csrf": csrf, "tag": "head", "di_id": wat.world.dis["B"]}
    )
    assert other.status_code == 404
    bad = wat.client.post(f"/osfs/{osf}/tags", data={"csrf": csrf, "tag": "a b/c", "di_id": new})
    assert bad.status_code == 400
    added = wat.client.post(f"/osfs/{osf}/tags", data={"csrf": csrf, "tag": "beta", "di_id": new})
    assert added.status_code == 200
    assert _tag_holder(wat, engine, "beta") == new
    assert 'data-tag="beta" draggable="true"' in added.text
    assert wat.client.get(f"/osfs/{wat.world.osfs['B']}/tags").status_code == 404


def test_the_list_offers_mass_block_and_delete(wat: Wat) -> None:
    from qvd.wat.pages.dis import VIEW

    names = {m.name: m for m in VIEW.mass}
    assert names["delete"].confirm
    assert names["block"].arguments == {"blocked": True}
    assert VIEW.live == ("state", "blocked")
    wat.login()
    assert 'data-live-action="di_get_list"' in wat.client.get("/dis").text


_TEXT = re.compile(r"""(?:\b_|page\.t)\(\s*(?:"([^"]+)"|'([^']+)')\s*\)""")


def test_every_text_of_the_area_has_a_spanish_entry() -> None:
    from qvd.wat.i18n import catalogue
    from qvd.wat.pages.dis import VIEW

    root = Path(__file__).resolve().parents[2] / "src/qvd/wat"
    sources = [*(root / "templates/dis").glob("*.html"), root / "pages/dis.py",
               root / "pages/di_tags.py"]  # fmt: skip
    texts = {a or b for p in sources for a, b in _TEXT.findall(p.read_text(encoding="utf-8"))}
    texts |= {VIEW.title, *(c.label for c in VIEW.columns), *(m.label for m in VIEW.mass)}
    assert len(texts) > 80
    spanish = catalogue("es")
    assert sorted(t for t in texts if t not in spanish) == []


def test_the_upload_page_in_spanish(wat: Wat) -> None:
    csrf = wat.login("adminA", "tenantA")
    assert (
        wat.client.post(
            "/settings/language", data={"csrf": csrf, "language": "es", "next": "/dis/new"}
        ).status_code
        == 303
    )
    page = wat.client.get("/dis/new").text
    assert "Subir una imagen de disco" in page
    assert "Progreso de la subida" in page


def test_superadmin_imports_a_tenants_staged_file(wat: Wat, storage: Path) -> None:
    csrf = wat.login()
    folder = storage / "staging" / str(wat.world.tenants["A"])
    folder.mkdir(parents=True)
    (folder / "gold.tar.gz").write_bytes(tarball())
    name = f"{wat.world.tenants['A']}/gold.tar.gz"
    assert name in wat.client.get("/dis/staging").text
    body = {"disk_image": name, "osf_id": wat.world.osfs["A"], "version": "gold"}
    r = wat.client.post("/api/v1/dis/staging", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text


def test_ids_out_of_range_are_not_found(wat: Wat) -> None:
    csrf = wat.login()
    assert wat.client.get("/dis/99999999999").status_code == 404
    assert wat.client.get("/osfs/99999999999/tags").status_code == 404
    osf = wat.world.osfs["A"]
    r = wat.client.post(
        f"/osfs/{osf}/tags", data={"csrf": csrf, "tag": "head", "di_id": "99999999999"}
    )
    assert r.status_code == 404


def test_an_admin_without_di_acls_gets_the_apis_refusal(wat: Wat, engine: Engine) -> None:
    from tests.api.conftest import add_admin

    with Session(engine) as s, s.begin():
        add_admin(s, "nobody", wat.world.tenants["A"], role=None)
    wat.login("nobody", "tenantA")
    r = wat.client.get(f"/dis/{wat.world.dis['A']}")
    assert r.status_code == 403
    assert "Refused" in r.text
    assert "di_get_list" in r.text or "ACL" in r.text
    assert wat.client.get(f"/osfs/{wat.world.osfs['A']}/tags").status_code == 403
    assert wat.client.get("/dis/new").status_code == 403
