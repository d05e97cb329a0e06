"""Browser fixtures of the viewer's tests: a real desktop (Xvfb, xterm, x11vnc) and the
stand-in portal (``harness.py``) for the test module; each test opens a fresh browser
context (``open_page``: fails on console errors, page errors and failed requests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.portal.browser.harness import Desktop, Harness, running_desktop, running_harness

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser

from tests.wat.browser.conftest import BrowserPage, open_page


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    with running_desktop(tmp_path_factory.mktemp("desktop")) as running:
        yield running


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, desktop: Desktop) -> Iterator[Harness]:
    with running_harness(tmp_path_factory.mktemp("harness"), desktop) as running:
        yield running


@pytest.fixture
def viewer_page(chromium: Browser, harness: Harness) -> Iterator[BrowserPage]:
    harness.refuse = None
    with open_page(chromium, harness.base) as bp:
        yield bp
