"""Limits set by configuration tokens: the size of an uploaded image
(``api.di.upload.max_size``) and the window of the failed-login limit
(``api.login.rate_limit.window``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qvd.api import create_app
from qvd.config import Config
from tests.api.asgi import asgi_client
from tests.api.conftest import PASSWORD, Api, World, api_config
from tests.api.test_upload_stream import tarball

LIMIT = 16384  # a tarball is at least 10240 bytes


@pytest.fixture
def limited(tmp_path: Path, api_engine: Engine, world: World) -> Iterator[tuple[Api, Config]]:
    config = api_config(
        tmp_path,
        **{
            "api.di.upload.max_size": str(LIMIT),
            "api.login.rate_limit.attempts": "2",
            "api.login.rate_limit.window": "1",
        },
    )
    with asgi_client(create_app(config, api_engine)) as client:
        yield Api(client), config


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


def test_logins_are_allowed_again_after_the_window(
    limited: tuple[Api, Config], world: World
) -> None:
    api, _ = limited
    for _ in range(2):
        r = api.act("vm_get_list", login="adminA", password="bad", tenant="tenantA")
        assert r["status"] == 3200
    r = api.act("vm_get_list", login="adminA", password=PASSWORD, tenant="tenantA")
    assert r["status"] == 3200
    assert "too many failed logins (2 in 1 s)" in r["message"]
    time.sleep(1.1)
    r = api.act("vm_get_list", login="adminA", password=PASSWORD, tenant="tenantA")
    assert r["status"] == 0, r


@pytest.mark.parametrize(
    ("token", "value"),
    [("api.login.rate_limit.window", "0"), ("api.login.rate_limit.attempts", "0")],
)
def test_a_rate_limit_that_cannot_work_is_a_configuration_error(
    tmp_path: Path, api_engine: Engine, token: str, value: str
) -> None:
    from qvd.config import ConfigValueError

    with pytest.raises(ConfigValueError, match=token.rsplit(".", 1)[0]):
        create_app(api_config(tmp_path, **{token: value}), api_engine)
