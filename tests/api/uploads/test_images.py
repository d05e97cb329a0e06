"""The size limit of an uploaded or staged image (``api.di.upload.max_size``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qvd.config import Config
from tests.api.conftest import UPLOAD_LIMIT as LIMIT
from tests.api.conftest import Api, World
from tests.api.uploads.test_form_stream import tarball


def _leftovers(config: Config) -> list[Path]:
    images = config.get_path("path.storage.images")
    return sorted(images.iterdir()) if images.exists() else []


def _dis(api: Api, osf_id: int) -> list[object]:
    r = api.act("di_get_list", sid=api.login("root"), filters={"osf_id": osf_id})
    assert r["status"] == 0, r
    return list(r["rows"])


@pytest.mark.parametrize(("size", "what"), [(LIMIT * 2, "image"), (LIMIT + (2 << 20), "upload")])
def test_an_upload_over_the_limit_fails_and_leaves_nothing(
    limited: tuple[Api, Config], world: World, size: int, what: str
) -> None:
    """Just over the limit: refused while it is copied; far over: refused from the
    declared length before the form is read. Either way 2250 with the reason."""
    api, config = limited
    osf = world.osfs["A"]
    r = api.client.post(
        "/api/di/upload",
        data={
            "action": "di_create",
            "arguments": json.dumps({"osf_id": osf, "version": "big"}),
            "sid": api.login("root"),
        },
        files={"file": ("big.tar", tarball(size), "application/octet-stream")},
    )
    body = r.json()
    assert body["status"] == 2250, body
    assert body["message"].startswith(f"the {what} (")
    assert f"limit of {LIMIT} bytes" in body["message"]
    assert "api.di.upload.max_size" in body["message"]
    assert _leftovers(config) == []
    assert len(_dis(api, osf)) == 1  # the world's own DI only

    rest = api.client.post(
        "/api/v1/dis/upload",
        headers=api.headers("root"),
        data={"arguments": json.dumps({"osf_id": osf, "version": "big2"})},
        files={"file": ("big.tar", tarball(size), "application/octet-stream")},
    )
    assert rest.status_code == 400, rest.text
    assert rest.json()["status"] == 2250
    assert _leftovers(config) == []


def test_an_upload_within_the_limit_is_imported(limited: tuple[Api, Config], world: World) -> None:
    api, config = limited
    r = api.client.post(
        "/api/v1/dis/upload",
        headers=api.headers("root"),
        data={"arguments": json.dumps({"osf_id": world.osfs["A"], "version": "small"})},
        files={"file": ("small.tar", tarball(100), "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    assert [p.name for p in _leftovers(config)] == [f"{r.json()['id']}-small.tar"]


def test_a_staged_image_over_the_limit_is_refused(
    limited: tuple[Api, Config], world: World
) -> None:
    api, config = limited
    staging = config.get_path("path.storage.staging")
    staging.mkdir(parents=True)
    (staging / "big.tar").write_bytes(tarball(LIMIT * 2))
    r = api.client.post(
        "/api/di/staging",
        json={
            "action": "di_create",
            "sid": api.login("root"),
            "arguments": {"disk_image": "big.tar", "osf_id": world.osfs["A"]},
        },
    )
    assert r.json()["status"] == 2250, r.text
    assert _leftovers(config) == []
    assert (staging / "big.tar").exists()
