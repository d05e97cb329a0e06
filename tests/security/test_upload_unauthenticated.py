"""An unauthenticated client posts a huge DI upload. Before the fix the API streamed the
file part into ``images/.upload-*`` and only then looked at the credentials (a form may
send them after the file), then read the rest of the body: anyone who could reach the
API could fill the node's disk and keep a worker busy for as long as they liked.

Now the sender must be known (query string, header, or form fields before the file)
and allowed to create DIs before a byte of the file part is read: nothing is written,
and the body is read at most ``FORM_OVERHEAD`` further before the answer (the real
server then closes the connection)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from qvd.api import api_endpoint, create_app
from qvd.api.uploads import form_stream
from tests.api.asgi import asgi_client
from tests.api.conftest import Api, World, add_admin, api_config, running_api
from tests.api.conftest import api_engine as api_engine
from tests.api.conftest import world as world
from tests.api.uploads.test_form_stream import BOUNDARY, form, post

PIECE = b"\0" * (64 << 10)
PIECES = 16384  # 1 GiB of file data


def _head(*fields: tuple[str, str]) -> bytes:
    parts = [(name, value, None) for name, value in fields]
    head = form(*parts, close=False)
    return (
        head
        + (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="huge.tar"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
    )


class _Watch:
    """Polls the images and staging directories for any file while the upload runs."""

    def __init__(self, *folders: Path) -> None:
        self.folders = folders
        self.seen: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            for folder in self.folders:
                with contextlib.suppress(FileNotFoundError):
                    self.seen.update(p.name for p in folder.iterdir())
            time.sleep(0.002)

    def __enter__(self) -> _Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.parametrize("who", ["anonymous", "bad-sid", "no-permission"])
def test_an_unauthenticated_upload_is_refused_unread(
    tmp_path: Path, api_engine: Engine, world: World, who: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = api_config(tmp_path)
    images = config.get_path("path.storage.images")
    staging = config.get_path("path.storage.staging")

    def no_spool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file part was accepted for writing")

    monkeypatch.setattr(form_stream, "ImageSpool", no_spool)
    app = create_app(config, api_engine)
    fields = [("action", "di_create"), ("arguments", json.dumps({"osf_id": world.osfs["A"]}))]
    status = 3100
    if who == "bad-sid":
        fields.append(("sid", "not-a-session"))
        status = 3300
    elif who == "no-permission":
        with Session(api_engine) as session, session.begin():
            add_admin(session, "norole", world.tenants["A"], role=None)
        with asgi_client(app) as client:
            fields.append(("sid", Api(client).login("norole", "tenantA")))
        status = 4210
    pieces = [_head(*fields), *([PIECE] * PIECES)]
    with _Watch(images, staging) as watch:
        r = post(app, "/api/di/upload", pieces)
    assert r.body["status"] == status, r.body
    limit = (form_stream.FORM_OVERHEAD + 2 * len(PIECE)) // len(PIECE)
    assert r.received <= limit < len(pieces)  # the body was not read through
    assert watch.seen == set()
    assert not images.exists() or list(images.iterdir()) == []


def test_the_rest_face_refuses_an_anonymous_upload_unread(
    tmp_path: Path, api_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/api/v1/dis/upload`` without a token: refused (401) before the body is read."""
    config = api_config(tmp_path)

    def no_spool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file part was accepted for writing")

    monkeypatch.setattr(form_stream, "ImageSpool", no_spool)
    pieces = [_head(("arguments", "{}")), *([PIECE] * PIECES)]
    r = post(create_app(config, api_engine), "/api/v1/dis/upload", pieces)
    assert r.status == 401, r.body
    assert r.received <= 1
    images = config.get_path("path.storage.images")
    assert not images.exists() or list(images.iterdir()) == []


def test_the_real_server_answers_before_the_body_is_sent(
    tmp_path: Path, api_engine: Engine, world: World
) -> None:
    """uvicorn over TLS, a raw socket: the 3100 answer comes while most of a 1 GiB body
    is still unsent, and nothing reaches the disk."""
    with running_api(tmp_path, api_engine) as running:
        endpoint = api_endpoint(running.config)
        images = running.config.get_path("path.storage.images")
        context = ssl.create_default_context(cafile=str(endpoint.cert))
        head = _head(("action", "di_create"), ("arguments", "{}"))
        total = len(head) + PIECES * len(PIECE)
        request = (
            "POST /api/di/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {total}\r\n\r\n"
        ).encode()
        raw = socket.create_connection(("127.0.0.1", running.port))
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        sent = 0
        answer = b""
        with _Watch(images) as watch:
            try:
                sock.sendall(request + head)
                sock.settimeout(5)
                while sent < PIECES * len(PIECE):
                    try:
                        sock.sendall(PIECE)
                    except (TimeoutError, OSError):
                        break  # the server stopped reading (or closed)
                    sent += len(PIECE)
                sock.settimeout(30)
                with contextlib.suppress(OSError):
                    while b"}" not in answer:
                        data = sock.recv(65536)
                        if not data:
                            break
                        answer += data
            finally:
                sock.close()
        assert sent < PIECES * len(PIECE) // 4, sent
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["status"] == 3100, body
        assert watch.seen == set()
