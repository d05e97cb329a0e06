"""Browser fixtures: the real API server (TLS, uvicorn; the WAT at ``/``) over a fresh
database holding the API tests' world, and Debian's Chromium driven headless by
Playwright (no browser download: ``/usr/bin/chromium``, installed by
``scripts/deps-wat.sh``).

Every page a test opens collects its console errors, failed requests and uncaught
exceptions; a test fails at teardown if there were any (``BrowserPage.allow`` lists the
ones a test provokes on purpose). ``axe_violations`` runs axe-core (from the WAT's
npm lockfile) in the page; ``keep_screenshot`` writes a PNG to the evidence directory
($QVD_TEST_OUTPUT/wat when set) and checks that it shows something.
"""

from __future__ import annotations

import contextlib
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from qvd.db import make_engine
from qvd.wat.pages import ROUTERS
from tests.api.conftest import PASSWORD, World, build_world, running_api

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

__all__ = [
    "BrowserPage",
    "LiveWat",
    "WatPage",
    "axe_violations",
    "keep_screenshot",
    "log_in",
    "open_page",
    "route_of",
    "routed",
    "wat_pages",
]

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parents[3] / "src/qvd/wat/vendor/node_modules/axe-core/axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root, in CI
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no calls out
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]


@dataclass
class LiveWat:
    """A running API (and WAT) over its own database."""

    base: str
    engine: Engine
    world: World
    tmp: Path


@dataclass
class BrowserPage:
    """A Playwright page with what went wrong in it."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """An error text this test provokes on purpose (a regular expression)."""
        self.allowed.append(re.compile(pattern))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


def start_playwright() -> Iterator[Playwright]:
    """The body of the fixture ``playwright_driver`` (``tests/conftest.py``: one per
    test module, for the WAT's browser tests and its attack tests in ``tests/security``;
    two at once would clash, each runs its own event loop)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/deps-wat.sh (./qvd.sh test does)")
    with sync_playwright() as p:
        yield p


def launch_chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    """The body of the fixture ``chromium`` (``tests/conftest.py``)."""
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def live_wat(db: Any, tmp_path: Path) -> Iterator[LiveWat]:
    """The API server on a free loopback port, over a fresh database with the world."""
    engine = make_engine(db)
    try:
        world = build_world(engine)
        with running_api(tmp_path, engine) as api:
            yield LiveWat(f"https://127.0.0.1:{api.port}", engine, world, tmp_path)
    finally:
        engine.dispose()


def _benign(failure: str | None, url: str) -> bool:
    """A request failure that says nothing about the WAT: a WebSocket closed by leaving
    the page, a static file (icon, stylesheet) whose load a navigation cut short (a real
    failure to serve one shows as an HTTP status in the console)."""
    if url.startswith(("wss:", "ws:")):
        return True
    return failure == "net::ERR_ABORTED" and "/static/" in url


def _watch(bp: BrowserPage) -> None:
    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            bp.errors.append(f"console: {message.text}" + (f" [{where}]" if where else ""))

    bp.page.on("console", console)
    bp.page.on("pageerror", lambda exc: bp.errors.append(f"pageerror: {exc}"))
    bp.page.on(
        "requestfailed",
        lambda req: (
            bp.errors.append(f"requestfailed: {req.url} {req.failure}")
            if not _benign(req.failure, req.url)
            else None
        ),
    )


@contextlib.contextmanager
def open_page(chromium: Browser, base: str) -> Iterator[BrowserPage]:
    """A fresh browser context (no cookies) on the WAT at ``base``; fails on exit on
    console errors, failed requests or page exceptions it did not allow."""
    context = chromium.new_context(
        ignore_https_errors=True, viewport={"width": 1366, "height": 768}, locale="en-GB"
    )
    page = context.new_page()
    page.set_default_timeout(15000)
    bp = BrowserPage(page, base)
    _watch(bp)
    try:
        yield bp
        unexpected = bp.unexpected_errors()
        assert not unexpected, f"errors in the browser: {unexpected}"
    finally:
        context.close()


@pytest.fixture
def browser_page(chromium: Browser, live_wat: LiveWat) -> Iterator[BrowserPage]:
    """A fresh browser context (no cookies) on the live WAT; fails the test at teardown
    on console errors, failed requests or page exceptions it did not allow."""
    with open_page(chromium, live_wat.base) as bp:
        yield bp


def log_in(
    bp: BrowserPage,
    name: str = "root",
    tenant: str = "*",
    password: str = PASSWORD,
    language: str = "",
) -> None:
    """Log in through the form (from wherever the page is) and wait for the dashboard;
    ``language`` ("en", "es") is chosen on the form (and saved to the administrator)."""
    bp.goto("/login")
    tenant_box = bp.page.locator("#tenant")
    if tenant_box.count():
        tenant_box.fill(tenant)
    bp.page.fill("#login", name)
    bp.page.fill("#password", password)
    if language:
        bp.page.select_option("#language", language)
    bp.page.click("#login-form button[type=submit]")
    bp.page.wait_for_selector("#admin-name")


def axe_violations(
    page: Page, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[dict[str, Any]]:
    """axe-core's violations of ``impacts`` on the page as it is now (the script is
    evaluated through the DevTools protocol, which the page's CSP does not govern)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run scripts/deps-wat.sh (npm ci)")
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v.get("impact") in impacts
    ]


def _png_colours(data: bytes) -> int:
    """How many distinct pixel values a PNG holds (sampled): a blank page has one or two."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, width, height, chunks = 8, 0, 0, b""
    bit_depth = colour_type = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, bit_depth, colour_type = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + length
    assert bit_depth == 8, bit_depth
    assert colour_type in (2, 6), colour_type
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(chunks)
    stride = width * channels + 1
    seen: set[bytes] = set()
    for y in range(0, height, max(1, height // 60)):
        row = raw[y * stride + 1 : (y + 1) * stride]  # filtered bytes: enough to tell variety
        for x in range(0, width * channels, channels * max(1, width // 80)):
            seen.add(row[x : x + channels])
    return len(seen)


def keep_screenshot(page: Page, evidence_dir: Path, name: str, must_show: tuple[str, ...]) -> Path:
    """Save a screenshot of the whole page as ``wat/<name>.png`` among the test
    artefacts, after checking the page shows each text of ``must_show`` and that the
    picture is not blank."""
    body = page.inner_text("body")
    missing = [t for t in must_show if t not in body]
    assert not missing, f"{name}: the page does not show {missing}"
    folder = evidence_dir / "wat"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    data = page.screenshot(path=str(path), full_page=True)
    assert _png_colours(data) > 8, f"{name}: the screenshot looks blank"
    return path


# ---- the pages the WAT shows an administrator ------------------------------------------
_DETAIL = re.compile(r"^(/[a-z]+)/(\d+)$")


@dataclass(frozen=True, slots=True)
class WatPage:
    """A page to visit: ``kind`` is "dashboard", "list", "new" or "detail"; ``name`` is
    the text the page's link showed (a detail page's object name)."""

    path: str
    kind: str
    name: str = ""


def _status(bp: BrowserPage, path: str) -> int:
    """The HTTP status of ``path`` for this session, without navigating to it."""
    answer = bp.page.request.get(bp.base + path, max_redirects=0)
    try:
        return answer.status
    finally:
        answer.dispose()


def _is_page(bp: BrowserPage, path: str) -> bool:
    """Whether ``path`` answers an HTML page (not a 404, a redirect or a CSV download)."""
    answer = bp.page.request.get(bp.base + path, max_redirects=0)
    try:
        kind = answer.headers.get("content-type", "")
        return answer.status == 200 and kind.startswith("text/html")
    finally:
        answer.dispose()


def _links(bp: BrowserPage, selector: str) -> list[tuple[str, str]]:
    found: list[list[str]] = bp.page.eval_on_selector_all(
        selector, "links => links.map(a => [a.getAttribute('href') || '', a.textContent.trim()])"
    )
    return [(href.split("#")[0], text) for href, text in found]


def wat_pages(bp: BrowserPage) -> tuple[list[WatPage], list[str]]:
    """The pages this logged-in administrator can reach, found the way they would: the
    menu the WAT shows (``nav.menu a``); from each list page its links below it
    (``<list>/new``: "new", ``<list>/staging``: "sub") and its first row's detail link
    (``<list>/<id>``: "detail"); from that detail page its links below it
    (``/osfs/<id>/tags``: "sub"). Only HTML pages are kept (no downloads). Menu entries
    that answer 404 are areas not built yet: returned apart (second value) so suites
    grow with the WAT."""
    bp.goto("/")
    bp.page.wait_for_selector("nav.menu")
    menu = _links(bp, "nav.menu a")
    pages: list[WatPage] = []
    seen: set[str] = set()
    missing: list[str] = []

    def add(path: str, kind: str, name: str = "") -> None:
        """One page per route: ``/configs/<token>`` once, not once per token."""
        route = route_of(path) or path
        if route not in seen and _is_page(bp, path):
            seen.add(route)
            pages.append(WatPage(path, kind, name))

    for path, label in menu:
        if _status(bp, path) == 404:
            missing.append(path)
            continue
        add(path, "dashboard" if path == "/" else "list", label)
        if path == "/":
            continue
        bp.goto(path)
        found = [h for h, _ in _links(bp, f'main a[href^="{path}/"]')]
        if f"{path}/new" in found:  # the new page's own links (upload → staging)
            bp.goto(f"{path}/new")
            found += [h for h, _ in _links(bp, f'main a[href^="{path}/"]')]
            bp.goto(path)
        for href in found:
            if not _DETAIL.match(href) and "?" not in href:
                add(href, "new" if href == f"{path}/new" else "sub")
        for href, text in _links(bp, "table#list tbody tr[data-id] a[href]"):
            match = _DETAIL.match(href)
            if match and match.group(1) == path and _is_page(bp, href):
                add(href, "detail", text)
                bp.goto(href)
                for below, _ in _links(bp, f'main a[href^="{href}/"]'):
                    if "?" not in below:
                        add(below, "sub")
                break
    return pages, missing


# ---- which URLs the WAT routes (areas are built in parallel) ---------------------------
def _route_rule(path: str) -> re.Pattern[str]:
    """A route's path as a regular expression (``{x:int}`` digits, ``{x}`` one segment)."""
    rule = re.sub(r"\\\{[a-z_]+:int\\\}", r"\\d+", re.escape(path))
    return re.compile("^" + re.sub(r"\\\{[a-z_]+(:[a-z]+)?\\\}", "[^/]+", rule) + "$")


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, into included routers (the WAT's have no prefixes)."""
    for route in routes:
        if hasattr(route, "path"):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)


def route_of(url: str, method: str = "GET") -> str | None:
    """The path of the WAT's route that answers ``url`` (``/vms/{vm_id:int}``), if any."""
    for router in ROUTERS:
        for route in _routes(router.routes):
            methods = getattr(route, "methods", None) or ()
            if method in methods and _route_rule(route.path).match(url.split("?")[0]):
                return str(route.path)
    return None


def routed(url: str, method: str = "GET") -> bool:
    """Whether the WAT has a page route for ``url`` (a sample URL: ``/vms/1/start``)."""
    return route_of(url, method) is not None
