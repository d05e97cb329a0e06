"""A DI upload is streamed once, straight into a temporary file in the images
directory (``qvd.api.uploads.form_stream``): the size limit applies as it streams (with or
without a Content-Length), nothing is spooled in the temp directory first, the file
part is refused unread unless the sender is known before it, and no file is left
behind by any refusal,
including a client that goes away mid-upload.

Most tests drive the ASGI app directly, so the body arrives in chunks exactly as given
(a chunked body has no Content-Length) and the client can disconnect mid-body; one
disconnects from the real server (uvicorn over TLS)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import ssl
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.types import Message

from qvd.api import api_endpoint, create_app
from qvd.api.uploads import form_stream
from qvd.api.uploads.form_stream import FIELD_MAX_BYTES, MAX_FIELDS
from qvd.api.uploads.images import ImageSpool, check_image
from qvd.config import Config
from qvd.imagefile import Limits
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, World, api_config, running_api

LIMIT = 65536
BOUNDARY = "qvd-test-boundary-7f3a"
Part = tuple[str, str | bytes, str | None]  # name, value, file name (None: a text field)


def tarball(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/blob")
        info.size = size
        tar.addfile(info, io.BytesIO(b"x" * size))
    return buf.getvalue()


def form(*parts: Part, close: bool = True) -> bytes:
    out = bytearray()
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + (value.encode() if isinstance(value, str) else value) + b"\r\n"
    if close:
        out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def chunks(body: bytes, size: int = 4096) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    received: int  # body chunks the app read


async def _call(
    app: FastAPI,
    path: str,
    pieces: list[bytes],
    headers: dict[str, str],
    disconnect_after: int | None,
    during: Callable[[], None] | None,
) -> Answer:
    sent = 0
    start: dict[str, Any] = {}
    body = bytearray()

    async def receive() -> Message:
        nonlocal sent
        if disconnect_after is not None and sent == disconnect_after:
            if during is not None:
                during()
            return {"type": "http.disconnect"}
        if sent < len(pieces):
            sent += 1
            return {"type": "http.request", "body": pieces[sent - 1],
                    "more_body": sent < len(pieces)}  # fmt: skip
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "https", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("testserver", 443),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    await app(scope, receive, send)
    return Answer(start["status"], json.loads(body), sent)


def post(
    app: FastAPI,
    path: str,
    pieces: list[bytes],
    headers: dict[str, str] | None = None,
    *,
    disconnect_after: int | None = None,
    during: Callable[[], None] | None = None,
) -> Answer:
    """POST ``pieces`` as a chunked body (no Content-Length unless in ``headers``)."""
    all_headers = {
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        "transfer-encoding": "chunked",
        **(headers or {}),
    }
    return anyio.run(partial(_call, app, path, pieces, all_headers, disconnect_after, during))


@dataclass
class Setup:
    app: FastAPI
    api: Api
    config: Config
    world: World
    tmp: Path  # the process's temp directory for the test

    @property
    def images(self) -> Path:
        return self.config.get_path("path.storage.images")

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.images.iterdir()) if self.images.exists() else []

    def action_fields(self, sid: str | None = None, **args: Any) -> list[Part]:
        args.setdefault("osf_id", self.world.osfs["A"])
        return [
            ("action", "di_create", None),
            ("arguments", json.dumps(args), None),
            ("sid", sid if sid is not None else self.api.login("root"), None),
        ]

    def dis(self) -> int:
        r = self.api.act("di_get_list", sid=self.api.login("root"), filters={})
        assert r["status"] == 0, r
        return int(r["total"])


@pytest.fixture
def setup(
    tmp_path: Path, api_engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    """The app with ``api.di.upload.max_size`` = LIMIT; the temp directory (TMPDIR and
    ``tempfile.tempdir``) pointed at an empty directory that must stay empty."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    config = api_config(tmp_path, **{"api.di.upload.max_size": str(LIMIT)})
    app = create_app(config, api_engine)
    with asgi_client(app) as client:
        yield Setup(app, Api(client), config, world, tmp)
    assert sorted(os.listdir(tmp)) == []


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[tuple[ImageSpool, list[int]]]:
    """Every ImageSpool the upload makes, with the size of its file after each flush."""
    made: list[tuple[ImageSpool, list[int]]] = []

    class Recorded(ImageSpool):
        def __init__(self, folder: Path, *, max_bytes: int, reserve: int = 0) -> None:
            super().__init__(folder, max_bytes=max_bytes, reserve=reserve)
            self.sizes: list[int] = []
            made.append((self, self.sizes))

        def flush(self) -> None:
            super().flush()
            self.sizes.append(self.path.stat().st_size)

    monkeypatch.setattr(form_stream, "ImageSpool", Recorded)
    return made


@pytest.mark.parametrize("face", ["action", "rest"])
def test_a_chunked_upload_over_the_limit_is_refused_as_it_streams(
    setup: Setup, spools: list[tuple[ImageSpool, list[int]]], face: str
) -> None:
    """No Content-Length: the limit applies while the file streams; nothing over it
    reaches the disk, nothing is left in the images or the temp directory."""
    data = tarball(LIMIT * 3)
    before = setup.dis()
    if face == "action":
        body = form(*setup.action_fields(version="big"), ("file", data, "big.tar"))
        r = post(setup.app, "/api/di/upload", chunks(body))
        assert r.status == 200
    else:
        args = json.dumps({"osf_id": setup.world.osfs["A"], "version": "big"})
        body = form(("arguments", args, None), ("file", data, "big.tar"))
        r = post(setup.app, "/api/v1/dis/upload", chunks(body), setup.api.headers("root"))
        assert r.status == 400
    assert r.body["status"] == 2250, r.body
    assert r.body["message"].startswith("the image (")
    assert f"limit of {LIMIT} bytes (api.di.upload.max_size)" in r.body["message"]
    assert len(spools) == 1
    spool, sizes = spools[0]
    assert all(size <= LIMIT for size in sizes)
    assert not spool.path.exists()
    assert setup.leftovers() == []
    assert setup.dis() == before


def test_a_declared_length_over_the_limit_is_refused_unread(setup: Setup) -> None:
    body = form(*setup.action_fields(), ("file", tarball(100), "small.tar"))
    length = str(LIMIT + form_stream.FORM_OVERHEAD + 1)
    r = post(setup.app, "/api/di/upload", chunks(body), {"content-length": length})
    assert r.body["status"] == 2250
    assert r.body["message"].startswith(f"the upload ({length} bytes) is larger than")
    assert r.received == 0
    assert setup.leftovers() == []


def test_the_file_is_written_once_and_nowhere_else(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starlette's form parser (which spools to the temp directory) is never used, the
    temp directory stays empty, and the file checked is the very file (same inode) that
    becomes the image: renamed, never copied."""
    import starlette.formparsers

    def no_spooling(*args: object, **kwargs: object) -> None:
        raise AssertionError("the upload was spooled by Starlette's form parser")

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", no_spooling)
    seen: list[tuple[list[str], int, int]] = []

    def check(path: Path, name: str, limits: Limits) -> int:
        seen.append((setup.leftovers(), path.stat().st_ino, path.stat().st_size))
        assert os.listdir(setup.tmp) == []
        return check_image(path, name, limits)

    monkeypatch.setattr("qvd.api.uploads.di_import.check_image", check)
    data = tarball(LIMIT // 2)
    body = form(*setup.action_fields(version="once"), ("file", data, "once.tar"))
    r = post(setup.app, "/api/di/upload", chunks(body, 1000))
    assert r.body["status"] == 0, r.body
    di_id = r.body["rows"][0]["id"]
    [(during, inode, size)] = seen
    [temporary] = during
    assert temporary.startswith(".upload-")
    assert size == len(data)
    final = setup.images / f"{di_id}-once.tar"
    assert final.stat().st_ino == inode
    assert final.read_bytes() == data
    assert setup.leftovers() == [final.name]


def test_a_file_part_before_the_credentials_is_refused_unread(
    setup: Setup, spools: list[tuple[ImageSpool, list[int]]]
) -> None:
    """Credentials that come only after the file (good or bad) are too late: the file
    part is refused before a byte of it is stored."""
    before = setup.dis()
    for sid in (setup.api.login("root"), "not-a-session"):
        body = form(("file", tarball(1000), "first.tar"), *setup.action_fields(sid=sid))
        r = post(setup.app, "/api/di/upload", chunks(body))
        assert r.body["status"] == 3100, r.body
        assert "before the file part" in r.body["message"]
    assert spools == []
    assert setup.leftovers() == []
    assert setup.dis() == before


def test_a_sid_in_the_query_string_authenticates_before_the_file(setup: Setup) -> None:
    """The WAT sends its credentials in the query string: the form may then start with
    the file."""
    data = tarball(1000)
    body = form(("file", data, "first.tar"), *setup.action_fields(version="first")[:2])
    r = post(setup.app, f"/api/di/upload?sid={setup.api.login('root')}", chunks(body))
    assert r.body["status"] == 0, r.body
    di_id = r.body["rows"][0]["id"]
    assert setup.leftovers() == [f"{di_id}-first.tar"]
    assert (setup.images / f"{di_id}-first.tar").read_bytes() == data


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"sid": "not-a-session"}, 3300),
        ({"login": "root", "password": "wrong", "tenant": "*"}, 3200),
    ],
)
def test_bad_credentials_before_the_file_refuse_it_unwritten(
    setup: Setup, spools: list[tuple[ImageSpool, list[int]]], fields: dict[str, str], status: int
) -> None:
    """Credentials before the file are checked before it is written: nothing reaches
    the disk; the rest of the (small) body is read so the client gets the answer."""
    args = json.dumps({"osf_id": setup.world.osfs["A"]})
    body = form(
        ("action", "di_create", None),
        ("arguments", args, None),
        *[(k, v, None) for k, v in fields.items()],
        ("file", tarball(LIMIT // 2), "early.tar"),
    )
    pieces = chunks(body)
    r = post(setup.app, "/api/di/upload", pieces)
    assert r.body["status"] == status, r.body
    assert spools == []
    assert r.received == len(pieces)
    assert setup.leftovers() == []


def test_a_refused_body_is_read_no_further_than_an_upload_may_go(
    setup: Setup, spools: list[tuple[ImageSpool, list[int]]]
) -> None:
    body = form(
        *setup.action_fields(sid="not-a-session"),
        ("file", b"\0" * (LIMIT + 2 * form_stream.FORM_OVERHEAD), "huge.tar"),
    )
    pieces = chunks(body, 65536)
    r = post(setup.app, "/api/di/upload", pieces)
    assert r.body["status"] == 3300, r.body
    assert r.received < len(pieces)
    assert r.received * 65536 <= LIMIT + form_stream.FORM_OVERHEAD + 2 * 65536
    assert spools == []


def test_no_permission_refuses_the_file_before_it_is_written(
    setup: Setup, spools: list[tuple[ImageSpool, list[int]]], api_engine: Engine
) -> None:
    from sqlalchemy.orm import Session

    from tests.api.conftest import add_admin

    with Session(api_engine) as session, session.begin():
        add_admin(session, "norole", setup.world.tenants["A"], role=None)
    sid = setup.api.login("norole", "tenantA")
    body = form(*setup.action_fields(sid=sid), ("file", tarball(100), "nope.tar"))
    r = post(setup.app, "/api/di/upload", chunks(body))
    assert 4200 <= r.body["status"] < 4300, r.body
    assert spools == []
    assert setup.leftovers() == []


@pytest.mark.parametrize("face", ["action", "rest"])
def test_a_client_that_disconnects_mid_upload_leaves_nothing(setup: Setup, face: str) -> None:
    before = setup.dis()
    data = tarball(LIMIT // 2)
    if face == "action":
        path, headers = "/api/di/upload", {}
        body = form(*setup.action_fields(version="cut"), ("file", data, "cut.tar"))
    else:
        path, headers = "/api/v1/dis/upload", setup.api.headers("root")
        args = json.dumps({"osf_id": setup.world.osfs["A"], "version": "cut"})
        body = form(("arguments", args, None), ("file", data, "cut.tar"))
    pieces = chunks(body, 1024)
    mid_upload: list[list[str]] = []

    def during() -> None:
        mid_upload.append(setup.leftovers())

    half = len(pieces) // 2
    r = post(setup.app, path, pieces, headers, disconnect_after=half, during=during)
    assert r.body["status"] == 2250, r.body
    assert f"the client went away after {half * 1024} bytes" in r.body["message"]
    [[temporary]] = mid_upload
    assert temporary.startswith(".upload-")  # it was being written
    assert setup.leftovers() == []
    assert setup.dis() == before


@pytest.mark.parametrize(
    ("parts", "status", "needle"),
    [
        ([("arguments", "x" * (FIELD_MAX_BYTES + 1), None)], 6230, "larger than 64 KiB"),
        ([(f"f{i}", "v", None) for i in range(MAX_FIELDS + 1)], 6230, "more than 20 fields"),
        ([("file", tarball(100), "again.tar")], 6230, "more than one file part"),
    ],
    ids=["field-over-the-cap", "too-many-fields", "second-file"],
)
def test_a_malformed_form_after_the_file_is_refused_and_leaves_nothing(
    setup: Setup, parts: list[Part], status: int, needle: str
) -> None:
    body = form(*setup.action_fields(version="bad"), ("file", tarball(100), "a.tar"), *parts)
    r = post(setup.app, "/api/di/upload", chunks(body))
    assert r.body["status"] == status, r.body
    assert needle in r.body["message"]
    assert setup.leftovers() == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (form(("file", tarball(100), "a.tar"), close=False), {}, 2250, "was cut off"),
        (b"this is no multipart body", {}, 6230, "malformed"),
        (form(("image", tarball(100), "a.tar")), {}, 6240, "named 'image', not 'file'"),
        (form(("arguments", "{}", None)), {}, 6240, "has no 'file' part"),
        (b'{"action": "di_create"}', {"content-type": "application/json"}, 6240, "multipart"),
        (b"", {"content-type": "multipart/form-data"}, 6230, "no multipart boundary"),
    ],
    ids=["truncated", "garbage", "misnamed-file", "no-file", "json", "no-boundary"],
)
def test_a_bad_upload_body_is_a_clear_error_and_leaves_nothing(
    setup: Setup, body: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    sid = setup.api.login("root")
    full = form(("sid", sid, None), close=False) + body if body.startswith(b"--") else body
    r = post(setup.app, "/api/di/upload", chunks(full), {**headers, "x-qvd-sid": sid})
    assert r.body["status"] == status, r.body
    assert needle in r.body["message"]
    assert setup.leftovers() == []


def test_a_client_that_disconnects_from_the_real_server_leaves_nothing(
    tmp_path: Path, api_engine: Engine, world: World
) -> None:
    """uvicorn over TLS: a raw socket sends part of a large upload and closes."""
    with running_api(tmp_path, api_engine) as running:
        endpoint = api_endpoint(running.config)
        context = ssl.create_default_context(cafile=str(endpoint.cert))
        with httpx.Client(verify=context, base_url=endpoint.url) as client:
            sid = Api(client).login("root")
        images = running.config.get_path("path.storage.images")
        args = json.dumps({"osf_id": world.osfs["A"], "version": "cut"})
        head = form(("action", "di_create", None), ("arguments", args, None),
                    ("sid", sid, None), close=False)  # fmt: skip
        head += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="cut.tar"\r\n\r\n'
        ).encode()
        request = (
            "POST /api/di/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(head) + (64 << 20)}\r\n\r\n"
        ).encode()
        raw = socket.create_connection(("127.0.0.1", running.port))
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        try:
            sock.sendall(request + head + b"\0" * (2 << 20))
            # the upload file appears, then the bytes reach it (two events, not one)
            assert _eventually(lambda: _upload_bytes(images) > 0)
        finally:
            sock.close()
        assert _eventually(lambda: not any(images.glob(".upload-*")))
        assert list(images.iterdir()) == []


def _upload_bytes(images: Path) -> int:
    """Bytes in the upload files being written (0 while there are none)."""
    total = 0
    for part in images.glob(".upload-*"):
        with contextlib.suppress(FileNotFoundError):
            total += part.stat().st_size
    return total


def _eventually(condition: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("declared", [False, True], ids=["streamed", "content-length"])
def test_an_upload_that_would_eat_the_reserve_is_refused_and_leaves_nothing(
    tmp_path: Path, api_engine: Engine, world: World, declared: bool
) -> None:
    """``api.di.upload.reserve`` stays free: with a reserve larger than the disk's free
    space, the first byte of the file (or the declared length) is already too much."""
    import shutil

    config = api_config(tmp_path)
    images = config.get_path("path.storage.images")
    images.mkdir(parents=True)
    reserve = shutil.disk_usage(images).free + (1 << 30)
    config = api_config(tmp_path, **{"api.di.upload.reserve": str(reserve)})
    app = create_app(config, api_engine)
    with asgi_client(app) as client:
        sid = Api(client).login("root")
    args = json.dumps({"osf_id": world.osfs["A"]})
    body = form(("action", "di_create", None), ("arguments", args, None), ("sid", sid, None),
                ("file", tarball(4096), "r.tar"))  # fmt: skip
    headers = {"content-length": str(len(body)), "transfer-encoding": ""} if declared else {}
    r = post(app, "/api/di/upload", chunks(body), headers)
    assert r.body["status"] == 2250, r.body
    assert "api.di.upload.reserve" in r.body["message"]
    assert list(images.iterdir()) == []
