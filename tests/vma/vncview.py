"""A minimal RFB viewer for tests: open_vnc, then one full Raw framebuffer update.

Enough to tell whether the desktop shows pixels (the test image's xterm is white on
nxagent's black root) without a browser.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass

from qvd.l7r.vnc import VncStream, open_vnc

__all__ = ["Frame", "VmaAt", "grab_frame"]

TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class VmaAt:
    """A VMA endpoint (``qvd.l7r.vnc.Endpoint``)."""

    address: str
    port: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    width: int
    height: int
    pixels: bytes  # 32 bpp, little-endian BGRX (the pixel format we ask for)

    def bright(self) -> int:
        """How many pixels are near white."""
        count = 0
        data = self.pixels
        for i in range(0, len(data), 4 * 7):  # every 7th pixel is plenty
            if data[i] > 200 and data[i + 1] > 200 and data[i + 2] > 200:
                count += 1
        return count * 7


async def read_frame(stream: VncStream, until: Callable[[Frame], bool] | None = None) -> Frame:
    """The first full frame; with ``until``, then the updates of the screen until the
    frame satisfies it (a fresh session's first frame may come before its first window
    is drawn)."""
    stream.writer.write(b"\x01")  # ClientInit: shared
    head = stream.pending + await stream.reader.readexactly(24 - len(stream.pending))
    width, height = struct.unpack(">HH", head[:4])
    (name_length,) = struct.unpack(">I", head[20:24])
    await stream.reader.readexactly(name_length)
    # SetPixelFormat: 32 bpp, depth 24, little endian, true colour, BGRX
    pixel_format = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    stream.writer.write(b"\x00\x00\x00\x00" + pixel_format)
    stream.writer.write(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: Raw only
    stream.writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    await stream.writer.drain()
    canvas = bytearray(width * height * 4)
    covered = 0
    while covered < width * height:
        covered += await _apply_update(stream, canvas, width)
    frame = Frame(width, height, bytes(canvas))
    while until is not None and not until(frame):
        stream.writer.write(struct.pack(">BBHHHH", 3, 1, 0, 0, width, height))  # incremental
        await stream.writer.drain()
        await _apply_update(stream, canvas, width)
        frame = Frame(width, height, bytes(canvas))
    return frame


async def _apply_update(stream: VncStream, canvas: bytearray, width: int) -> int:
    """Read server messages until one FramebufferUpdate, drawn into ``canvas``; the
    number of pixels it covered."""
    while True:
        kind = (await stream.reader.readexactly(1))[0]
        if kind == 1:
            _, _, count = struct.unpack(">BHH", await stream.reader.readexactly(5))
            await stream.reader.readexactly(6 * count)
            continue
        if kind == 2:
            continue
        if kind == 3:
            (length,) = struct.unpack(">3xI", await stream.reader.readexactly(7))
            await stream.reader.readexactly(length)
            continue
        if kind != 0:
            raise AssertionError(f"unexpected RFB server message {kind}")
        (rects,) = struct.unpack(">xH", await stream.reader.readexactly(3))
        covered = 0
        for _ in range(rects):
            x, y, w, h, encoding = struct.unpack(">HHHHi", await stream.reader.readexactly(12))
            if encoding != 0:
                raise AssertionError(f"asked for Raw, got encoding {encoding}")
            data = await stream.reader.readexactly(w * h * 4)
            for row in range(h):
                start = ((y + row) * width + x) * 4
                canvas[start : start + w * 4] = data[row * w * 4 : (row + 1) * w * 4]
            covered += w * h
        return covered


def grab_frame(
    endpoint: VmaAt,
    *,
    view_only: bool,
    attach: bool,
    notice: str = "",
    until: Callable[[Frame], bool] | None = None,
) -> tuple[int, int, Frame]:
    """Connect, read one full frame (and updates ``until`` it satisfies that),
    disconnect; (width, height, frame)."""

    async def run() -> Frame:
        stream = await open_vnc(
            endpoint, view_only=view_only, attach=attach, notice=notice, timeout=TIMEOUT
        )
        try:
            return await asyncio.wait_for(read_frame(stream, until), TIMEOUT)
        finally:
            await stream.close()

    frame = asyncio.run(run())
    return frame.width, frame.height, frame
