"""Reading a DI upload (``multipart/form-data``) as it arrives: the one ``file`` part
goes chunk by chunk into an :class:`~qvd.api.uploads.images.ImageSpool` in the images directory
(written once, there, with ``api.di.upload.max_size`` and the disk's room applied as it
streams: nothing is spooled anywhere else first, whether or not the body has a
Content-Length), the small text fields (``action``, ``arguments``, ``sid``, …) are kept
in memory, at most :data:`FIELD_MAX_BYTES` each.

The parser is python-multipart's streaming ``MultipartParser`` fed from
``request.stream()``. When the file part begins, ``on_file`` is awaited with the fields
seen so far, so a caller can refuse (bad credentials, no permission) before a byte of
the file is written. On any failure the temporary file is removed; after a refusal the
rest of the body is read and dropped (never stored), up to the size an upload may have,
so the client reads the answer instead of a reset connection.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from qvd.api.errors import ApiError, InvalidRequest, Status
from qvd.api.uploads.images import ImageSpool, no_room, room_for_images, too_large

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "FIELD_MAX_BYTES",
    "FORM_OVERHEAD",
    "MAX_FIELDS",
    "OnFile",
    "UploadForm",
    "receive_upload",
]

FIELD_MAX_BYTES = 64 << 10
"""The largest text field of an upload form."""
MAX_FIELDS = 20
"""The most text fields an upload form may have."""
FORM_OVERHEAD = 1 << 20
"""Room in a request body for the form's text fields and the multipart framing around
the file: a declared Content-Length over ``max_size`` plus this is refused unread."""

FILE_FIELD = "file"

OnFile = Callable[[Mapping[str, str], str], Awaitable[None]]
"""Awaited when the file part begins, with the text fields before it and the file's
name; raising an ``ApiError`` refuses the upload before the file is written."""


@dataclass(frozen=True, slots=True)
class UploadForm:
    """A received upload: its text fields, and the image in a temporary file in the
    images directory (the caller imports or removes it)."""

    fields: dict[str, str]
    file: Path
    filename: str


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class _FileStart:
    filename: str


@dataclass(frozen=True, slots=True)
class _Data:
    chunk: bytes


_Event = _Field | _FileStart | _Data


def _decode(raw: bytes | bytearray, charset: str) -> str:
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Parts:
    """The parser's callbacks: they turn the body into events (text field, file start,
    file data) in body order, enforcing the form's shape and the text fields' caps;
    ``receive_upload`` acts on the events between two chunks of the body."""

    def __init__(self, charset: str) -> None:
        self.charset = charset
        self.events: list[_Event] = []
        self.ended = False
        self._fields = 0
        self._files = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InvalidRequest("a part of the upload form has no name (Content-Disposition)")
        self._name = _decode(options[b"name"], self.charset)
        if b"filename" not in options:
            self._fields += 1
            if self._fields > MAX_FIELDS:
                raise InvalidRequest(f"the upload form has more than {MAX_FIELDS} fields")
            return
        self._files += 1
        if self._files > 1:
            raise InvalidRequest("the upload form has more than one file part")
        if self._name != FILE_FIELD:
            raise InvalidRequest(
                f"the upload form's file part is named {self._name!r}, not {FILE_FIELD!r}",
                Status.MISSING_ARGUMENT,
            )
        self._is_file = True
        self.events.append(_FileStart(_decode(options[b"filename"], self.charset)))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if start == end:
            return
        if self._is_file:
            self.events.append(_Data(data[start:end]))
            return
        if len(self._text) + (end - start) > FIELD_MAX_BYTES:
            raise InvalidRequest(
                f"the upload form field {self._name!r} is larger than {FIELD_MAX_BYTES // 1024} KiB"
            )
        self._text += data[start:end]

    def on_part_end(self) -> None:
        if not self._is_file:
            self.events.append(_Field(self._name, _decode(self._text, self.charset)))

    def on_end(self) -> None:
        self.ended = True


def _boundary_and_charset(request: Request) -> tuple[bytes, str]:
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data":
        raise InvalidRequest(
            f"an upload is a multipart/form-data form with a {FILE_FIELD!r} part",
            Status.MISSING_ARGUMENT,
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("the upload form has no multipart boundary")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    return boundary, charset


def _check_declared_length(request: Request, folder: Path, max_bytes: int, reserve: int) -> None:
    """Refuse a body whose declared length cannot fit, before any of it is read."""
    try:
        length = int(request.headers.get("content-length", ""))
    except ValueError:
        return
    if length > max_bytes + FORM_OVERHEAD:
        raise too_large(length, max_bytes, "the upload")
    free, room = room_for_images(folder, reserve)
    if length > room + FORM_OVERHEAD:
        raise no_room(length, free, folder, what="the upload", reserve=reserve)


class _Receiver:
    def __init__(self, folder: Path, max_bytes: int, on_file: OnFile | None, reserve: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.reserve = reserve
        self.on_file = on_file
        self.fields: dict[str, str] = {}
        self.spool: ImageSpool | None = None
        self.filename = ""
        self.received = 0

    async def run(self, stream: AsyncIterator[bytes], parser: MultipartParser,
                  parts: _Parts) -> None:  # fmt: skip
        async for chunk in stream:
            self.received += len(chunk)
            parser.write(chunk)
            events, parts.events = parts.events, []
            for event in events:
                await self._act(event)
        parser.finalize()

    async def _act(self, event: _Event) -> None:
        match event:
            case _Field(name, value):
                self.fields[name] = value
            case _FileStart(filename):
                if self.on_file is not None:
                    await self.on_file(dict(self.fields), filename)
                self.filename = filename
                self.spool = await run_in_threadpool(
                    partial(ImageSpool, self.folder, max_bytes=self.max_bytes, reserve=self.reserve)
                )
            case _Data(chunk):
                assert self.spool is not None
                if self.spool.add(chunk):
                    await run_in_threadpool(self.spool.flush)

    async def drain(self, stream: AsyncIterator[bytes]) -> None:
        """Read (and drop) the rest of a refused body, up to what an upload may send
        (a body refused before its file was accepted, say for want of credentials: up
        to :data:`FORM_OVERHEAD` more bytes only; past that, the connection is closed)."""
        limit = self.max_bytes if self.spool is not None else self.received
        try:
            while self.received <= limit + FORM_OVERHEAD:
                chunk = await anext(stream, None)
                if chunk is None:
                    return
                self.received += len(chunk)
        except ClientDisconnect:
            return

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.discard()


async def receive_upload(
    request: Request,
    folder: Path,
    *,
    max_bytes: int,
    on_file: OnFile | None = None,
    reserve: int = 0,
) -> UploadForm:
    """Read the upload form of ``request``, its file streamed into a temporary file in
    ``folder`` (at most ``max_bytes``). Refusals: 2250 over the limit, out of room, cut
    off or disconnected; 6240 no ``file`` part; 6230 a malformed form (a text field over
    :data:`FIELD_MAX_BYTES`, more than :data:`MAX_FIELDS` fields, a second file part);
    or whatever ``on_file`` raises. ``reserve`` bytes must stay free on the disk. The
    temporary file is gone after any refusal."""
    _check_declared_length(request, folder, max_bytes, reserve)
    boundary, charset = _boundary_and_charset(request)
    parts = _Parts(charset)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
    except FormParserError as exc:
        raise InvalidRequest(f"the upload form is malformed: {exc}") from None
    receiver = _Receiver(folder, max_bytes, on_file, reserve)
    async with aclosing(request.stream()) as stream:
        try:
            await receiver.run(stream, parser, parts)
            if not parts.ended:
                raise InvalidRequest(
                    f"the upload was cut off after {receiver.received} bytes "
                    "(the form has no closing boundary)",
                    Status.UPLOAD_FAILED,
                )
            if receiver.spool is None:
                raise InvalidRequest(
                    f"the form has no {FILE_FIELD!r} part", Status.MISSING_ARGUMENT
                )
            path = await run_in_threadpool(receiver.spool.finish)
        except ClientDisconnect:
            receiver.discard()
            raise InvalidRequest(
                f"the client went away after {receiver.received} bytes of the upload",
                Status.UPLOAD_FAILED,
            ) from None
        except FormParserError as exc:
            receiver.discard()
            await receiver.drain(stream)
            raise InvalidRequest(f"the upload form is malformed: {exc}") from None
        except ApiError:
            receiver.discard()
            await receiver.drain(stream)
            raise
        except BaseException:
            receiver.discard()
            raise
    return UploadForm(fields=receiver.fields, file=path, filename=receiver.filename)
