"""Static files: the WAT's own (``static/``) and the vendored browser libraries that
``npm ci`` installs from ``vendor/package-lock.json`` into ``vendor/node_modules`` (the
README's set-up runs it: ``scripts/deps-wat.sh``). Only the files named in
:data:`VENDOR_FILES` are served from there."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

__all__ = ["STATIC_DIR", "VENDOR_DIR", "VENDOR_FILES", "static_file", "vendor_file"]

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
VENDOR_DIR = _HERE / "vendor" / "node_modules"
VENDOR_FILES = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
}
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
_CACHE = "public, max-age=300"


def _file(path: Path) -> Response:
    kind = _TYPES.get(path.suffix)
    if kind is None or not path.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(path, media_type=kind, headers={"Cache-Control": _CACHE})


async def static_file(request: Request) -> Response:
    """``/static/<path>`` from ``static/`` (never outside it)."""
    rel = str(request.path_params["path"])
    path = (STATIC_DIR / rel).resolve()
    if not path.is_relative_to(STATIC_DIR.resolve()):
        raise HTTPException(404, "no such file")
    return _file(path)


async def vendor_file(request: Request) -> Response:
    """``/static/vendor/<name>``: one of :data:`VENDOR_FILES`."""
    rel = VENDOR_FILES.get(str(request.path_params["name"]))
    if rel is None:
        raise HTTPException(404, "no such file")
    path = VENDOR_DIR / rel
    if not path.is_file():
        raise HTTPException(
            503, f"{rel} is not installed: run scripts/deps-wat.sh (npm ci in {VENDOR_DIR.parent})"
        )
    return _file(path)
