"""Attack: a tenant's administrator lists and imports the disk images staged for the
platform or for another tenant.

Before the fix every administrator with ``di.create.`` saw and imported every file of
``path.storage.staging``, and the errors named the node's path. Now superadmins use
the top directory, a tenant's administrators only ``staging/tenant-<id>/``, and their
errors name no node path. The API in-process over a real PostgreSQL, real files.
"""

from __future__ import annotations

from pathlib import Path

from qvd.config import Config
from tests.api.conftest import Api, World, api, api_engine, config, world  # noqa: F401
from tests.api.services.test_dis import tarball


def _import(api: Api, sid: str, name: str, osf_id: int) -> dict[str, object]:  # noqa: F811
    reply = api.client.post(
        "/api/di/staging",
        json={
            "action": "di_create",
            "sid": sid,
            "arguments": {"disk_image": name, "osf_id": osf_id},
        },
    )
    data: dict[str, object] = reply.json()
    return data


def test_a_tenant_sees_and_imports_only_its_own_staged_images(
    api: Api,  # noqa: F811
    world: World,  # noqa: F811
    config: Config,  # noqa: F811
) -> None:
    root: Path = config.get_path("path.storage.staging")
    dirs = {
        "platform": root,
        "A": root / f"tenant-{world.tenants['A']}",
        "B": root / f"tenant-{world.tenants['B']}",
    }
    for label, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{label.lower()}-image.tar.gz").write_bytes(tarball())
    admin_a = api.login("adminA", "tenantA")

    listed = api.act("dis_in_staging", sid=admin_a)
    assert listed["status"] == 0, listed
    assert listed["rows"] == [{"name": "a-image.tar.gz"}]
    platform = api.act("dis_in_staging", sid=api.login("root"))
    assert platform["rows"] == [{"name": "platform-image.tar.gz"}]

    osf_a = world.osfs["A"]
    for other in ("b-image.tar.gz", "platform-image.tar.gz"):
        refused = _import(api, admin_a, other, osf_a)
        assert refused["status"] == 2240, refused
        assert str(root) not in str(refused["message"]), refused
    imported = _import(api, admin_a, "a-image.tar.gz", osf_a)
    assert imported["status"] == 0, imported
