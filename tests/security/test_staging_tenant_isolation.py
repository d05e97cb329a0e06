"""A tenant administrator lists and imports staged images. Before the fix every
tenant's administrators saw every file of ``path.storage.staging`` and could import
any of them (another customer's golden image, with its licences and secrets).

Now tenant A's administrator sees and imports only ``staging/<A's id>/``; a name of
tenant B's subdirectory, a top-level file, a ``..`` name and a symbolic link planted in
A's own subdirectory (pointing at B's file) are all refused; the superadministrator
sees everything and imports from any tenant's part. Against the real API and
PostgreSQL."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

from qvd.config import Config
from tests.api.conftest import Api, World
from tests.api.conftest import api as api
from tests.api.conftest import api_engine as api_engine
from tests.api.conftest import config as config
from tests.api.conftest import world as world


def _image(marker: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("etc/hostname")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def _import(api: Api, sid: str, name: str, osf_id: int) -> dict[str, Any]:
    r = api.client.post(
        "/api/di/staging",
        json={"action": "di_create", "sid": sid,
              "arguments": {"disk_image": name, "osf_id": osf_id}},
    )  # fmt: skip
    return dict(r.json())


def test_staging_is_per_tenant(api: Api, world: World, config: Config) -> None:
    root: Path = config.get_path("path.storage.staging")
    a, b = world.tenants["A"], world.tenants["B"]
    (root / str(a)).mkdir(parents=True)
    (root / str(b)).mkdir()
    (root / str(a) / "a-desktop.tar.gz").write_bytes(_image("a"))
    (root / str(b) / "b-secret.tar.gz").write_bytes(_image("b"))
    (root / "operator.tar.gz").write_bytes(_image("top"))
    (root / str(a) / "planted.tar.gz").symlink_to(root / str(b) / "b-secret.tar.gz")

    sid_a = api.login("adminA", "tenantA")
    listed = api.act("dis_in_staging", sid=sid_a)
    assert listed["status"] == 0, listed
    assert [row["name"] for row in listed["rows"]] == ["a-desktop.tar.gz"]

    osf_a = world.osfs["A"]
    before = api.act("di_get_list", sid=sid_a, filters={})["total"]
    for name in (f"{b}/b-secret.tar.gz", "b-secret.tar.gz", "operator.tar.gz",
                 "../operator.tar.gz", f"../{b}/b-secret.tar.gz", "planted.tar.gz"):  # fmt: skip
        r = _import(api, sid_a, name, osf_a)
        assert r["status"] != 0, (name, r)
    assert api.act("di_get_list", sid=sid_a, filters={})["total"] == before
    ok = _import(api, sid_a, "a-desktop.tar.gz", osf_a)
    assert ok["status"] == 0, ok

    root_sid = api.login("root")
    every = [row["name"] for row in api.act("dis_in_staging", sid=root_sid)["rows"]]
    assert every == sorted([f"{a}/a-desktop.tar.gz", f"{b}/b-secret.tar.gz", "operator.tar.gz"])
    r = _import(api, root_sid, f"{b}/b-secret.tar.gz", world.osfs["B"])
    assert r["status"] == 0, r
    names = {row["disk_image"] for row in api.act("di_get_list", sid=root_sid, filters={})["rows"]}
    assert any(n.endswith("-b-secret.tar.gz") for n in names), names
    assert (root / str(b) / "b-secret.tar.gz").exists()  # an import copies
