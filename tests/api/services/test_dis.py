"""DIs: upload and staging import with validation, tags (reference §7, including the
legacy behaviour of ``10-di-tag.t``), publishing and expiration, tag uniqueness
under concurrent moves; ``dis_in_staging``."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from qvd.api import create_app
from qvd.config import Config
from qvd.db.models import DiTag, VmRuntime
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, World, api_config
from tests.api.services.test_properties import _admin, _ok


# ---- dis_in_staging --------------------------------------------------------------------------
def test_dis_in_staging(api: Api, world: World, config: Config, api_engine: Engine) -> None:
    sid = api.login("adminA", "tenantA")
    assert api.act("dis_in_staging", sid=sid)["status"] == 2230
    root: Path = config.get_path("path.storage.staging")
    staging = root / str(world.tenants["A"])  # a tenant administrator's own part
    staging.mkdir(parents=True)
    for name in ("b.qcow2", "a.tar.gz", "notes.txt", ".upload-1234", "c.tar.zst"):
        (staging / name).write_bytes(b"x")
    (staging / "dir.tar").mkdir()
    (staging / "link.tar").symlink_to(staging / "a.tar.gz")  # links are never followed
    (root / "top.tar").write_bytes(b"x")  # the superadministrators' part
    r = _ok(api.act("dis_in_staging", sid=sid))
    assert r["rows"] == [{"name": n} for n in ("a.tar.gz", "b.qcow2", "c.tar.zst")]
    assert r["total"] == 3
    every = _ok(api.act("dis_in_staging", sid=api.login("root")))["rows"]
    a = world.tenants["A"]
    assert every == [{"name": n} for n in (f"{a}/a.tar.gz", f"{a}/b.qcow2", f"{a}/c.tar.zst",
                                           "top.tar")]  # fmt: skip
    assert api.act("dis_in_staging", sid=sid, filters={"id": 1})["status"] == 6210
    _admin(api_engine, "reader", world.tenants["A"], "Operator L1")
    assert api.act("dis_in_staging", sid=api.login("reader", "tenantA"))["status"] == 4210


def tarball(members: dict[str, bytes] | None = None, *, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (members or {"etc/hostname": b"desk\n"}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("evil-link")
            info.type = tarfile.LNKTYPE
            info.linkname = link
            tar.addfile(info)
    return gzip.compress(buf.getvalue(), mtime=0)


def upload(
    api: Api, osf_id: int, name: str = "desk.tar.gz", data: bytes | None = None, **args: Any
) -> Any:
    return api.client.post(
        "/api/v1/dis/upload",
        headers=api.headers("root"),
        data={"arguments": json.dumps({"osf_id": osf_id, **args})},
        files={"file": (name, data if data is not None else tarball(), "application/octet-stream")},
    )


def tags_of(api: Api, osf_id: int) -> dict[str, list[str]]:
    r = api.act(
        "di_get_list",
        sid=api.login("root"),
        filters={"osf_id": osf_id},
        fields=["version", "tags"],
        order_by={"field": ["id"], "order": "-asc"},
    )
    # QVD's face answers a DI's tags in lists as one comma-separated string
    return {row["version"]: sorted(filter(None, row["tags"].split(","))) for row in r["rows"]}


@pytest.fixture
def osf(api: Api, world: World) -> int:
    r = api.act(
        "osf_create",
        sid=api.login("root"),
        arguments={"name": "fresh", "tenant_id": world.tenants["A"]},
    )
    return int(r["rows"][0]["id"])


def test_upload_imports_publishes_and_stores_the_file(api: Api, osf: int, config: Config) -> None:
    r = upload(api, osf, version="v1")
    assert r.status_code == 201, r.text
    di_id = r.json()["id"]
    image = config.get_path("path.storage.images") / f"{di_id}-desk.tar.gz"
    assert image.read_bytes() == tarball()
    row = api.act(
        "di_get_list",
        sid=api.login("root"),
        filters={"id": di_id},
        fields=["state", "disk_image", "tags", "head", "default"],
    )["rows"][0]
    assert row == {
        "state": "published",
        "disk_image": f"{di_id}-desk.tar.gz",
        "tags": "v1,head",
        "head": True,
        "default": False,
    }
    assert not list(image.parent.glob(".upload-*"))


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("desk.zip", tarball(), "not an image file"),
        ("desk.tar.gz", tarball({"../etc/passwd": b"x"}), "path climbs out of the image"),
        ("desk.tar.gz", tarball({"/etc/passwd": b"x"}), "absolute path"),
        ("desk.tar.gz", tarball(link="/etc/shadow"), "which is not a regular file of the image"),
        ("desk.tar.gz", b"this is not gzip", "cannot decompress"),
        ("desk.qcow2", b"nope" * 10, "not a qcow2 image"),
        ("desk.tar.gz", b"", "empty"),
    ],
)
def test_unsafe_or_invalid_uploads_are_refused(
    api: Api, osf: int, config: Config, name: str, data: bytes, needle: str
) -> None:
    r = upload(api, osf, name=name, data=data)
    assert r.status_code == 400, r.text
    assert needle in r.json()["message"]
    assert tags_of(api, osf) == {}
    images = config.get_path("path.storage.images")
    assert not images.exists() or not list(images.iterdir())


def qcow2_bytes(tmp: Path, size: str = "64M") -> bytes:
    """A real, empty qcow2 image made by qemu-img."""
    path = tmp / f"made-{size}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path.read_bytes()


def test_qcow2_upload_through_the_action_face(api: Api, osf: int, tmp_path: Path) -> None:
    r = api.client.post(
        "/api/di/upload",
        data={
            "action": "di_create",
            "arguments": json.dumps({"osf_id": osf, "version": "k1"}),
            "sid": api.login("root"),
        },
        files={"file": ("vm.qcow2", qcow2_bytes(tmp_path), "application/octet-stream")},
    )
    assert r.json()["status"] == 0, r.text
    assert tags_of(api, osf) == {"k1": ["head", "k1"]}


@pytest.mark.parametrize(
    ("name", "cut", "needle"),
    [
        ("vm.qcow2", 100, "vm.qcow2: truncated"),
        ("vm.qcow2", 4, "vm.qcow2: truncated"),
        ("vm.tar.gz", None, "vm.tar.gz: is a qcow2 image: its name must end with .qcow2"),
        ("vm.tar", None, "vm.tar: is a qcow2 image"),
    ],
)
def test_a_qcow2_is_recognised_by_its_content(
    api: Api, osf: int, config: Config, tmp_path: Path, name: str, cut: int | None, needle: str
) -> None:
    data = qcow2_bytes(tmp_path)[:cut]
    r = upload(api, osf, name=name, data=data)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 2250
    assert needle in r.json()["message"]
    assert tags_of(api, osf) == {}
    images = config.get_path("path.storage.images")
    assert not images.exists() or not list(images.iterdir())


def test_a_qcow2_larger_than_the_unpack_bound_is_refused(
    tmp_path: Path, api_engine: Engine, world: World
) -> None:
    config = api_config(tmp_path, **{"di.unpack.max_bytes": str(1 << 30)})
    with asgi_client(create_app(config, api_engine)) as client:
        api = Api(client)
        ok = upload(api, world.osfs["A"], name="one.qcow2", data=qcow2_bytes(tmp_path, "1G"))
        assert ok.status_code == 201, ok.text
        r = upload(api, world.osfs["A"], name="two.qcow2", data=qcow2_bytes(tmp_path, "2G"))
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 2250
    assert r.json()["message"] == (
        f"two.qcow2: its virtual size ({2 << 30} bytes) is over the limit of {1 << 30} bytes "
        "(di.unpack.max_bytes)"
    )
    stored = sorted(p.name for p in config.get_path("path.storage.images").iterdir())
    assert [n.split("-", 1)[1] for n in stored] == ["one.qcow2"]


def test_staging_import(api: Api, osf: int, config: Config) -> None:
    staging = config.get_path("path.storage.staging")

    def import_staged() -> Any:
        return api.client.post(
            "/api/di/staging",
            json={
                "action": "di_create",
                "sid": api.login("root"),
                "arguments": {"disk_image": "staged.tar.gz", "osf_id": osf},
            },
        )

    assert import_staged().json()["status"] in (2230, 2240)
    staging.mkdir(parents=True)
    (staging / "staged.tar.gz").write_bytes(tarball())
    r = import_staged()
    assert r.json()["status"] == 0, r.text
    assert (staging / "staged.tar.gz").exists()
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert tags_of(api, osf) == {f"{today}-000": sorted([f"{today}-000", "head"])}


def test_legacy_di_tag_semantics(api: Api, osf: int, world: World) -> None:
    """10-di-tag.t: versions YYYY-MM-DD-000/001; head moves to the newest; default
    only when asked; tags move within one OSF only; fixed version tags never move."""
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    v0, v1 = f"{today}-000", f"{today}-001"
    first = upload(api, osf, tags=["default"]).json()["id"]
    assert tags_of(api, osf) == {v0: sorted([v0, "default", "head"])}
    second = upload(api, osf).json()["id"]
    assert tags_of(api, osf) == {v0: sorted([v0, "default"]), v1: sorted([v1, "head"])}
    # roll forward: move default to the new DI; roll back: move it again
    sid = api.login("root")
    r = api.act(
        "di_update",
        sid=sid,
        filters={"id": second},
        arguments={"__tags_changes__": {"create": ["default"]}},
    )
    assert r["status"] == 0
    assert tags_of(api, osf)[v1] == sorted([v1, "default", "head"])
    api.act(
        "di_update",
        sid=sid,
        filters={"id": first},
        arguments={"__tags_changes__": {"create": ["default"]}},
    )
    assert tags_of(api, osf)[v0] == sorted([v0, "default"])
    # a fixed tag cannot move, and head/default/fixed cannot be deleted
    r = api.act(
        "di_update",
        sid=sid,
        filters={"id": second},
        arguments={"__tags_changes__": {"create": [v0]}},
    )
    assert r["failures"][str(second)]["status"] == 7330
    for tag in ("head", "default", v0):
        r = api.act(
            "di_update",
            sid=sid,
            filters={"id": first},
            arguments={"__tags_changes__": {"delete": [tag]}},
        )
        assert r["failures"][str(first)]["status"] == 7340, tag
    # other OSFs are untouched
    assert tags_of(api, world.osfs["A"]) == {"v1": ["default", "head", "v1"]}


def test_tags_on_an_unpublished_di_wait_for_publishing(
    api: Api, osf: int, api_engine: Engine
) -> None:
    sid = api.login("root")
    first = upload(api, osf, version="a").json()["id"]
    r = api.act(
        "di_create",
        sid=sid,
        arguments={"disk_image": "b.tar.gz", "osf_id": osf, "version": "b", "__tags__": ["beta"]},
    )
    second = r["rows"][0]["id"]
    row = api.act(
        "di_get_list", sid=sid, filters={"id": second}, fields=["tags", "pending_tags", "state"]
    )["rows"][0]
    assert row == {"tags": "b", "pending_tags": ["head", "beta"], "state": "new"}
    r = api.act("di_publish", sid=sid, filters={"id": second})
    assert r["failures"][str(second)]["status"] == 7120  # not ready
    from qvd.db.models import DiRuntime

    with Session(api_engine) as s, s.begin():
        s.execute(update(DiRuntime).where(DiRuntime.di_id == second).values(state="ready"))
    assert api.act("di_publish", sid=sid, filters={"id": second})["status"] == 0
    assert tags_of(api, osf) == {"a": ["a"], "b": ["b", "beta", "head"]}
    del first


def test_publishing_expires_running_vms_on_the_old_di(
    api: Api, world: World, api_engine: Engine
) -> None:
    sid = api.login("root")
    with Session(api_engine) as s, s.begin():
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == world.vms["A"])
            .values(vm_state="running", host_id=world.host, current_di_id=world.dis["A"])
        )
    r = upload(
        api,
        world.osfs["A"],
        version="v2",
        tags=["default"],
        expiration_time_soft=60,
        expiration_time_hard=3600,
    )
    assert r.status_code == 201, r.text
    row = api.act(
        "vm_get_list",
        sid=sid,
        filters={"id": world.vms["A"]},
        fields=["expiration_soft", "expiration_hard", "di_version", "di_version_in_use"],
    )
    vm = row["rows"][0]
    soft = dt.datetime.fromisoformat(vm["expiration_soft"])
    hard = dt.datetime.fromisoformat(vm["expiration_hard"])
    assert dt.timedelta(seconds=30) < soft - dt.datetime.now(dt.UTC) < dt.timedelta(seconds=90)
    assert hard - soft > dt.timedelta(minutes=50)
    assert (vm["di_version"], vm["di_version_in_use"]) == ("v2", "v1")


def test_delete_moves_head_and_refuses_while_in_use(api: Api, osf: int, api_engine: Engine) -> None:
    sid = api.login("root")
    first = upload(api, osf, version="a", tags=["default"]).json()["id"]
    second = upload(api, osf, version="b").json()["id"]
    assert api.act("di_delete", sid=sid, filters={"id": second})["status"] == 0
    assert tags_of(api, osf) == {"a": ["a", "default", "head"]}
    with Session(api_engine) as s:
        tenant = s.scalar(select(DiTag.osf_id).where(DiTag.di_id == first))
    assert tenant == osf


def test_concurrent_moves_leave_one_tag_per_osf(api: Api, osf: int, api_engine: Engine) -> None:
    ids = [upload(api, osf, version=v).json()["id"] for v in ("a", "b", "c")]
    sid = api.login("root")
    barrier = threading.Barrier(len(ids))
    statuses: list[int] = []

    def mover(di_id: int) -> None:
        barrier.wait()
        for _ in range(5):
            r = api.act(
                "di_update",
                sid=sid,
                filters={"id": di_id},
                arguments={"__tags_changes__": {"create": ["default"]}},
            )
            statuses.append(r["status"])

    threads = [threading.Thread(target=mover, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert statuses == [0] * 15
    with Session(api_engine) as s:
        holders = list(
            s.scalars(select(DiTag.di_id).where(DiTag.osf_id == osf, DiTag.tag == "default"))
        )
    assert len(holders) == 1
    assert holders[0] in ids


def test_tag_list(api: Api, world: World) -> None:
    r = api.act(
        "tag_get_list",
        sid=api.login("adminA", "tenantA"),
        fields=["name", "fixed"],
        order_by={"field": ["name"], "order": "-asc"},
    )
    assert r["rows"] == [
        {"name": "default", "fixed": False},
        {"name": "head", "fixed": False},
        {"name": "v1", "fixed": True},
    ]
