"""Accessibility and keyboard sweep over every page the WAT shows an administrator.

For the superadmin (in English) and a tenant administrator (in Spanish) it visits the
menu's pages, each list's ``/new`` page and one detail page per kind of object (found by
following the WAT's own links, so the sweep grows with the WAT) and on each checks:
axe-core finds no serious or critical violation; from the top, Tab reaches the skip
link first and then the header's navigation, every tab stop shows a visible focus
outline, the skip link moves the focus into ``<main>``; at 1280x720 nothing scrolls
sideways; no console errors (the fixture). All problems of all pages are reported at once.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import ViewportSize

from tests.api.conftest import World
from tests.wat.browser.conftest import (
    BrowserPage,
    LiveWat,
    WatPage,
    axe_violations,
    log_in,
    routed,
    wat_pages,
)

TAB_STOPS = 40  # tab stops checked per page (the header's and the first of the content)
LAPTOP = ViewportSize(width=1280, height=720)

# What the focused element looks like: the outline drawn for :focus-visible, its box.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(), id: el.id, cls: el.className,
    text: (el.textContent || el.value || "").trim().slice(0, 40),
    inHeader: !!el.closest("header"), inMenu: !!el.closest("nav.menu"),
    skip: el.classList.contains("skip"),
    outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    shadow: style.boxShadow !== "none",
    width: box.width, height: box.height,
    onScreen: box.right > 0 && box.bottom > 0 && box.left < innerWidth,
  };
}"""


def _describe(el: dict[str, Any]) -> str:
    return f"<{el['tag']} id={el['id']!r} class={el['cls']!r}> {el['text']!r}"


def keyboard_problems(bp: BrowserPage, with_menu: bool) -> list[str]:
    """Tab through the page from the top; what is wrong with the focus path."""
    page = bp.page
    problems: list[str] = []
    # as the page arrived: nothing focused (the first Tab goes to the skip link), or a
    # field the page focuses itself (``autofocus``: the login form's first field)
    start = page.evaluate(FOCUSED)
    if start is None:
        page.keyboard.press("Tab")
        first = page.evaluate(FOCUSED)
        if not first or not first["skip"]:
            problems.append(f"the first Tab stop is not the skip link: {first}")
    elif page.evaluate("() => document.activeElement.hasAttribute('autofocus')"):
        first, with_menu = start, False
    else:
        return [f"something has the focus on arrival: {_describe(start)}"]
    reached_menu = False
    seen: list[str] = []
    for stop in range(TAB_STOPS):
        el = first if stop == 0 else page.evaluate(FOCUSED)
        if el is None:
            break  # the focus left the document: the page's last stop was passed
        key = _describe(el)
        if seen and key == seen[0]:
            break  # wrapped around
        seen.append(key)
        if not (el["outline"] or el["shadow"]):
            problems.append(f"tab stop {stop + 1} shows no focus outline: {key}")
        if el["width"] < 1 or el["height"] < 1 or not el["onScreen"]:
            problems.append(f"tab stop {stop + 1} is focused but not on screen: {key}")
        reached_menu = reached_menu or el["inMenu"]
        if with_menu and stop in (1, 2) and not el["inHeader"] and not reached_menu:
            problems.append(f"after the skip link, Tab leaves the header before the menu: {key}")
        page.keyboard.press("Tab")
    if with_menu and not reached_menu:
        problems.append("Tab never reaches the menu")
    # the skip link takes the keyboard past the header
    page.focus("a.skip")
    page.keyboard.press("Enter")
    inside = page.evaluate("() => !!document.activeElement?.closest('main')")
    if not inside:
        problems.append("Enter on the skip link does not move the focus into <main>")
    return problems


def layout_problems(bp: BrowserPage) -> list[str]:
    widths = bp.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if widths[0] > widths[1]:
        return [f"scrolls sideways at 1280x720 (content {widths[0]} px wide)"]
    return []


def check_page(bp: BrowserPage, target: WatPage, with_menu: bool = True) -> list[str]:
    response = bp.goto(target.path)
    if response is None or response.status >= 400:
        return [f"answers {response.status if response else 'nothing'}"]
    bp.page.wait_for_load_state("load")
    problems = [f"axe {v['impact']}: {v['id']} at {v['nodes']}" for v in axe_violations(bp.page)]
    if bp.page.locator("h1").count() != 1:
        problems.append(f"has {bp.page.locator('h1').count()} <h1> (one expected)")
    problems += layout_problems(bp)
    bp.goto(target.path)  # the keyboard starts from a page as it arrives
    bp.page.wait_for_load_state("load")
    problems += keyboard_problems(bp, with_menu)
    return problems


def sweep(bp: BrowserPage) -> tuple[list[WatPage], dict[str, list[str]]]:
    bp.page.set_viewport_size(LAPTOP)
    pages, not_built = wat_pages(bp)
    if not_built:
        print(f"menu entries not built yet (404): {not_built}")
    found: dict[str, list[str]] = {}
    for target in pages:
        problems = check_page(bp, target)
        if problems:
            found[target.path] = problems
    return pages, found


def report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{path}:\n  " + "\n  ".join(ps) for path, ps in found.items())


def test_login_page_is_accessible(browser_page: BrowserPage) -> None:
    browser_page.page.set_viewport_size(LAPTOP)
    problems = check_page(browser_page, WatPage("/login", "login"), with_menu=False)
    assert not problems, report({"/login": problems})


@pytest.mark.parametrize(
    ("name", "tenant", "language"),
    [("root", "*", "en"), ("adminA", "tenantA", "es")],
    ids=["superadmin-en", "tenant-admin-es"],
)
def test_every_page_passes_axe_keyboard_and_laptop_checks(
    browser_page: BrowserPage, name: str, tenant: str, language: str
) -> None:
    log_in(browser_page, name, tenant, language=language)
    browser_page.page.wait_for_selector(f"html[lang={language}]", state="attached")
    pages, found = sweep(browser_page)
    kinds = {p.kind for p in pages}
    assert {"dashboard", "list"} <= kinds, pages  # the sweep saw the WAT, not an error page
    assert any(p.path == "/vms" for p in pages), pages
    assert not found, f"accessibility problems on {len(found)} page(s):\n{report(found)}"


def other_tenants_objects(world: World) -> dict[str, str]:
    """Detail URLs of tenant B's objects (by list path) and their names."""
    return {
        f"/vms/{world.vms['B']}": "vmB",
        f"/users/{world.users['B']}": "userb",
        f"/osfs/{world.osfs['B']}": "osfB",
        f"/dis/{world.dis['B']}": "imageB",
        f"/administrators/{world.admins['B']}": "adminB",
        f"/roles/{world.roles['B']}": "roleB",
        f"/properties/{world.props['B']}": "propB",
    }


def test_another_tenants_objects_answer_a_clear_accessible_404(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    """A tenant administrator who types the URL of another tenant's object gets a 404
    page that says so, in the WAT's frame (menu, skip link), with nothing of the object,
    and that page passes the same checks. URLs of areas not built yet are left out."""
    log_in(browser_page, "adminA", "tenantA")
    checked = []
    for path, name in other_tenants_objects(live_wat.world).items():
        if not routed(path):
            continue
        browser_page.allow(rf"status of 404 .*\[{re.escape(browser_page.base + path)}\]")
        response = browser_page.goto(path)
        assert response is not None, path
        assert response.status == 404, (path, response.status)
        body = browser_page.page.inner_text("body")
        assert name not in body, f"{path} shows {name!r} to tenant A"
        assert browser_page.page.locator("nav.menu a").count() > 1, f"{path}: no menu"
        assert browser_page.page.inner_text("h1").strip(), f"{path}: no <h1>"
        problems = [f"axe {v['impact']}: {v['id']}" for v in axe_violations(browser_page.page)]
        problems += keyboard_problems(browser_page, with_menu=True)
        assert not problems, report({path: problems})
        checked.append(path)
    assert checked or not routed("/vms/1"), "the VM page is routed but was not checked"


def tab_to(bp: BrowserPage, selector: str, limit: int = 60) -> None:
    """Press Tab until the element ``selector`` has the focus."""
    for _ in range(limit):
        bp.page.keyboard.press("Tab")
        if bp.page.evaluate("(sel) => document.activeElement?.matches(sel) ?? false", selector):
            return
    raise AssertionError(f"{limit} Tabs never reached {selector}")


def test_keyboard_only_log_in_open_the_vms_and_a_vm(browser_page: BrowserPage) -> None:
    """No mouse: type into the login form (its first field has the focus), Enter; Tab to
    the menu's VM list, Enter; Tab to a VM's link, Enter."""
    page = browser_page.page
    browser_page.goto("/login")
    page.wait_for_selector("#login-form")
    page.keyboard.type("root")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-for-tests")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("#admin-name")
    tab_to(browser_page, 'nav.menu a[href="/vms"]')
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("table#list tbody tr[data-id]")
    assert page.url.endswith("/vms")
    tab_to(browser_page, "table#list tbody tr[data-id] a")
    target = page.evaluate("() => document.activeElement.getAttribute('href')")
    assert target.startswith("/")
    if routed(target):  # the VM page is built
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url.endswith(target)
        page.wait_for_selector("h1")
