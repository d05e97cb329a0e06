"""Attack (issue #13, KVM DIs): a tenant administrator uploads a qcow2 DI that names a
file of the node. A qcow2 may name a *backing file* (the guest reads it as the lower
layer of its disk: ``-b /etc/shadow``, or another tenant's disk) or an *external data
file* (the guest's reads and writes go to a host path of the author's choice); QEMU
opens either with the node's rights when the VM boots. Before the fix the API looked
at the first four bytes only (the qcow2 magic) and stored such an image as a DI.

Now the API parses the header (``qvd.imagefile.check_qcow2``) and refuses it with 2250
and the reason, through both faces of the real API server over TLS, and nothing is
left on disk or in the database. On the node, ``boot_files`` checks the header again
before ``qemu-img`` touches the image (and opens it with ``backing: null``), and
refuses a DI whose ``/boot/qvd/vmlinuz`` is a symbolic link to ``/etc/shadow``: the
file system is read by debugfs inside the image, the host path is never followed."""

from __future__ import annotations

import json
import ssl
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from qvd.api import api_endpoint
from qvd.config import Config
from qvd.db import make_engine
from qvd.hkd.backends.base import TerminalBackendError
from qvd.hkd.backends.kvm.bootfiles import boot_files
from tests.api.conftest import PASSWORD, World, build_world, running_api
from tests.hkd.backends.kvm.test_bootfiles import boot_tree, fake_kernel, make_di

_DATA_FILE_EXT = 0x44415441


def qcow2(path: Path, *options: str, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), size],
                   check=True, capture_output=True)  # fmt: skip
    return path


def point_data_file_at(image: Path, target: str) -> None:
    """Rewrite the external data file name extension to ``target`` (the image is made
    with a harmless data file first: ``qemu-img create`` would create the target)."""
    data = bytearray(image.read_bytes())
    start = offset = struct.unpack_from(">I", data, 100)[0]
    extensions: list[tuple[int, bytes]] = []
    while (kind := struct.unpack_from(">I", data, offset)[0]) != 0:
        length = struct.unpack_from(">I", data, offset + 4)[0]
        body = bytes(data[offset + 8 : offset + 8 + length])
        extensions.append((kind, target.encode() if kind == _DATA_FILE_EXT else body))
        offset += 8 + ((length + 7) & ~7)
    out = b"".join(
        struct.pack(">II", kind, len(body)) + body + b"\0" * (-len(body) % 8)
        for kind, body in extensions
    )
    out += b"\0" * 8  # the end marker
    data[start : offset + 8] = out.ljust(offset + 8 - start, b"\0")
    image.write_bytes(bytes(data))


def hostile_images(tmp: Path) -> dict[str, Path]:
    backing = qcow2(tmp / "shadow-backed.qcow2", "-b", "/etc/shadow", "-F", "raw")
    data_file = qcow2(tmp / "shadow-data.qcow2", "-o", f"data_file={tmp / 'harmless.raw'}")
    point_data_file_at(data_file, "/etc/shadow")
    return {"backing file": backing, "external data file": data_file}


@pytest.fixture
def attacker(db: Any, tmp_path: Path) -> Iterator[tuple[httpx.Client, World, Engine, Config, str]]:
    """A TLS client of the real API server and tenant A's administrator's session."""
    engine = make_engine(db)
    try:
        world = build_world(engine)
        with running_api(tmp_path, engine) as server:
            endpoint = api_endpoint(server.config)
            context = ssl.create_default_context(cafile=str(endpoint.cert))
            with httpx.Client(verify=context, base_url=endpoint.url, timeout=60) as client:
                login = client.post("/api", json={
                    "action": "current_admin_setup", "login": "adminA",
                    "password": PASSWORD, "tenant": "tenantA",
                })  # fmt: skip
                assert login.json()["status"] == 0, login.text
                yield client, world, engine, server.config, login.json()["sid"]
    finally:
        engine.dispose()


def _dis(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM dis")).scalar_one())


def _stored(config: Config) -> list[str]:
    images = config.get_path("path.storage.images")
    return sorted(p.name for p in images.iterdir()) if images.exists() else []


def test_a_qcow2_naming_a_node_file_is_refused_by_the_api(
    attacker: tuple[httpx.Client, World, Engine, Config, str], tmp_path: Path
) -> None:
    client, world, engine, config, sid = attacker
    before = _dis(engine)
    for what, image in hostile_images(_mkdir(tmp_path / "attack")).items():
        arguments = json.dumps({"osf_id": world.osfs["A"], "version": what.replace(" ", "-")})
        r = client.post(
            "/api/di/upload",
            data={"action": "di_create", "arguments": arguments, "sid": sid},
            files={"file": ("desk.qcow2", image.read_bytes(), "application/octet-stream")},
        )
        body = r.json()
        assert body["status"] == 2250, (what, body)
        assert body["message"].startswith("desk.qcow2: names a"), body
        assert what in body["message"], body
        rest = client.post(
            "/api/v1/dis/upload",
            headers={"Authorization": f"Bearer {sid}"},
            data={"arguments": arguments},
            files={"file": ("desk.qcow2", image.read_bytes(), "application/octet-stream")},
        )
        assert rest.status_code == 400, rest.text
        assert rest.json()["status"] == 2250
        assert what in rest.json()["message"]
        # named as a tarball, the image is still recognised by its content
        r = client.post(
            "/api/di/upload",
            data={"action": "di_create", "arguments": arguments, "sid": sid},
            files={"file": ("desk.tar", image.read_bytes(), "application/octet-stream")},
        )
        assert r.json()["status"] == 2250, r.json()
        assert "is a qcow2 image" in r.json()["message"]
        assert _stored(config) == []
    assert _dis(engine) == before
    # the same upload of an honest image goes through: the refusal is the content's
    honest = qcow2(tmp_path / "honest.qcow2")
    r = client.post(
        "/api/di/upload",
        data={"action": "di_create", "sid": sid,
              "arguments": json.dumps({"osf_id": world.osfs["A"], "version": "honest"})},
        files={"file": ("desk.qcow2", honest.read_bytes(), "application/octet-stream")},
    )  # fmt: skip
    assert r.json()["status"] == 0, r.json()
    assert [n.endswith("-desk.qcow2") for n in _stored(config)] == [True]


def test_a_staged_qcow2_naming_a_node_file_is_refused(
    attacker: tuple[httpx.Client, World, Engine, Config, str], tmp_path: Path
) -> None:
    client, world, engine, config, sid = attacker
    before = _dis(engine)
    staging = config.get_path("path.storage.staging") / str(world.tenants["A"])
    staging.mkdir(parents=True)
    for what, image in hostile_images(_mkdir(tmp_path / "attack")).items():
        image.rename(staging / image.name)
        r = client.post("/api/di/staging", json={
            "action": "di_create", "sid": sid,
            "arguments": {"disk_image": image.name, "osf_id": world.osfs["A"]},
        })  # fmt: skip
        assert r.json()["status"] == 2250, r.json()
        assert what in r.json()["message"]
        assert _stored(config) == []
    assert _dis(engine) == before


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_boot_files_never_follow_a_backing_file(tmp_path: Path) -> None:
    """A backing file on the node holding a bootable tree (standing for another
    tenant's DI): the overlay naming it is refused before qemu-img opens it."""
    victim_root = boot_tree(tmp_path / "victim", kernel=fake_kernel(marker=b"V"))
    victim = make_di(_mkdir(tmp_path / "node"), victim_root, "10001-victim.qcow2")
    overlay = qcow2(tmp_path / "10002-overlay.qcow2", "-b", str(victim), "-F", "qcow2",
                    size="32M")  # fmt: skip
    cache = tmp_path / "cache"
    with pytest.raises(TerminalBackendError, match="names a backing file"):
        boot_files(overlay, cache)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("target", ["/etc/shadow", "HOST"])
def test_a_kernel_linked_to_a_node_file_is_refused(tmp_path: Path, target: str) -> None:
    host_secret = tmp_path / "host-secret"  # stands for a node file the test can read
    host_secret.write_bytes(fake_kernel(marker=b"S"))
    link_to = str(host_secret) if target == "HOST" else target
    root = boot_tree(tmp_path / "root")
    kernel = root / "boot" / "qvd" / "vmlinuz"
    kernel.unlink()
    kernel.symlink_to(link_to)
    image = make_di(_mkdir(tmp_path / "images"), root)
    cache = tmp_path / "cache"
    with pytest.raises(
        TerminalBackendError, match=r"/boot/qvd/vmlinuz is a symlink, not a regular"
    ):
        boot_files(image, cache)
    leftovers = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert leftovers == []


def test_a_boot_directory_linked_to_a_node_directory_is_read_inside_the_image(
    tmp_path: Path,
) -> None:
    """``/boot/qvd`` itself a link to a node directory holding valid boot files: the
    link resolves inside the image (where that path does not exist), never on the node."""
    node_boot = boot_tree(tmp_path / "node") / "boot" / "qvd"  # valid, on the node
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "qvd").symlink_to(node_boot)
    image = make_di(_mkdir(tmp_path / "images"), root)
    with pytest.raises(TerminalBackendError, match="/boot/qvd/vmlinuz is missing from the image"):
        boot_files(image, tmp_path / "cache")
    loop = tmp_path / "loop"
    (loop / "boot").mkdir(parents=True)
    (loop / "boot" / "qvd").symlink_to("qvd")  # a link to itself
    with pytest.raises(TerminalBackendError, match="missing from the image"):
        boot_files(make_di(tmp_path / "images", loop, "10002-loop.qcow2"), tmp_path / "cache")
