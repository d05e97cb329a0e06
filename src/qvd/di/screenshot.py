"""Screenshots of an X display without ImageMagick: ``xwd`` output parsed in Python,
pixel statistics, and a small PNG writer (zlib) to keep the picture as evidence."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Screenshot", "parse_xwd", "take_screenshot"]


@dataclass(frozen=True, slots=True)
class Screenshot:
    """RGB pixels, row-major, 3 bytes each."""

    width: int
    height: int
    rgb: bytes

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = 3 * (y * self.width + x)
        return self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]

    def fraction(self, low: int = 0, high: int = 255, step: int = 2) -> float:
        """Share of (sampled) pixels whose three channels all lie in [low, high]."""
        hits = total = 0
        for y in range(0, self.height, step):
            row = 3 * y * self.width
            for x in range(0, self.width, step):
                i = row + 3 * x
                r, g, b = self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]
                total += 1
                if low <= r <= high and low <= g <= high and low <= b <= high:
                    hits += 1
        return hits / total if total else 0.0

    def bright_box(self, threshold: int = 235) -> tuple[int, int, int, int] | None:
        """Bounding box (x0, y0, x1, y1) of the near-white pixels, or None."""
        xs: list[int] = []
        ys: list[int] = []
        for y in range(0, self.height, 2):
            row = 3 * y * self.width
            for x in range(0, self.width, 2):
                i = row + 3 * x
                if min(self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]) >= threshold:
                    xs.append(x)
                    ys.append(y)
        if not xs:
            return None
        return min(xs), min(ys), max(xs), max(ys)

    def count_in_box(self, box: tuple[int, int, int, int], high: int = 80) -> int:
        """Dark pixels (all channels ≤ high) inside ``box``: text drawn on a white area."""
        x0, y0, x1, y1 = box
        dark = 0
        for y in range(y0, y1 + 1):
            row = 3 * y * self.width
            for x in range(x0, x1 + 1):
                i = row + 3 * x
                if max(self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]) <= high:
                    dark += 1
        return dark

    def distinct_colours(self, step: int = 4) -> int:
        seen: set[bytes] = set()
        for y in range(0, self.height, step):
            row = 3 * y * self.width
            for x in range(0, self.width, step):
                i = row + 3 * x
                seen.add(self.rgb[i : i + 3])
        return len(seen)

    def save_png(self, path: Path) -> None:
        raw = b"".join(
            b"\x00" + self.rgb[3 * y * self.width : 3 * (y + 1) * self.width]
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
        path.write_bytes(png)


def parse_xwd(data: bytes) -> Screenshot:
    """Decode a 24/32-bit TrueColor ZPixmap XWD file (what ``xwd -root`` gives here)."""
    fields = struct.unpack(">25I", data[:100])
    header_size = fields[0]
    width, height = fields[4], fields[5]
    byte_order = fields[7]
    bits_per_pixel = fields[11]
    bytes_per_line = fields[12]
    red_mask, green_mask, blue_mask = fields[14], fields[15], fields[16]
    ncolors = fields[19]
    if bits_per_pixel not in (24, 32):
        raise ValueError(f"unsupported XWD depth {bits_per_pixel}")
    offset = header_size + 12 * ncolors
    step = bits_per_pixel // 8
    order: Literal["little", "big"] = "little" if byte_order == 0 else "big"

    def shift(mask: int) -> int:
        return (mask & -mask).bit_length() - 1

    shifts = shift(red_mask), shift(green_mask), shift(blue_mask)
    out = bytearray(width * height * 3)
    masks = (red_mask, green_mask, blue_mask)
    if step == 4 and order == "little" and masks == (0xFF0000, 0xFF00, 0xFF):
        pixels = b"".join(
            data[offset + y * bytes_per_line : offset + y * bytes_per_line + 4 * width]
            for y in range(height)
        )
        out[0::3], out[1::3], out[2::3] = pixels[2::4], pixels[1::4], pixels[0::4]
        return Screenshot(width=width, height=height, rgb=bytes(out))
    for y in range(height):
        line = offset + y * bytes_per_line
        for x in range(width):
            start = line + x * step
            value = int.from_bytes(data[start : start + step], order)
            i = 3 * (y * width + x)
            out[i] = (value & red_mask) >> shifts[0]
            out[i + 1] = (value & green_mask) >> shifts[1]
            out[i + 2] = (value & blue_mask) >> shifts[2]
    return Screenshot(width=width, height=height, rgb=bytes(out))


def take_screenshot(display: str) -> Screenshot:
    """The root window of ``display`` (e.g. ``:42``) via ``xwd``."""
    env = dict(os.environ, DISPLAY=display)
    done = subprocess.run(
        ["xwd", "-root", "-silent"], capture_output=True, env=env, check=True, timeout=20
    )
    return parse_xwd(done.stdout)
