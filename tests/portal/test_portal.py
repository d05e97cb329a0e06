"""The user portal attached to a real L7R over TLS: logins through the L7R's auth chain,
the desktops list, start/stop/restart by the shared rules, logout, and the browser
session's WebSocket up to the VNC step."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from tests.l7r.auth.test_totp import SECRET32, current_codes, set_totp_secret
from tests.l7r.ldap_fixture import set_config
from tests.portal.conftest import PASSWORD, HkdStandIn, PortalLab, wait_for


# ---- logins -----------------------------------------------------------------------------
def test_login_with_the_right_password_shows_the_desktops_page(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    page = browser.get("/")
    assert page.status_code == 200
    assert 'form id="login" method="post" action="/login"' in page.text
    assert browser.log_in().status_code == 303
    page = browser.get("/")
    assert 'table id="desktops"' in page.text
    assert 'src="/static/js/desktops.js"' in page.text
    assert browser.csrf
    assert browser.csrf != browser.token


def test_a_wrong_password_gets_the_l7r_reason(portal_lab: PortalLab) -> None:
    response = portal_lab.browser().log_in(password="nope")
    assert response.status_code == 401
    assert "wrong login or password" in response.text.lower() or "password" in response.text
    assert "qvd-portal" not in response.headers.get("set-cookie", "")
    assert 'form id="login"' in response.text


def test_an_unknown_tenant_is_named(portal_lab: PortalLab) -> None:
    response = portal_lab.browser().log_in(tenant="nowhere")
    assert response.status_code == 401
    assert "unknown tenant" in response.text


def test_a_tenant_qualified_login_works(portal_lab: PortalLab) -> None:
    with portal_lab.engine.connect() as conn:
        tenant = conn.execute(text("SELECT name FROM tenants WHERE id = 1")).scalar_one()
    assert portal_lab.browser().log_in(tenant=str(tenant)).status_code == 303


def test_a_blocked_user_cannot_log_in(portal_lab: PortalLab) -> None:
    portal_lab.block_user("alice")
    response = portal_lab.browser().log_in()
    assert response.status_code == 401
    assert "blocked" in response.text


def test_totp_code_appended_to_the_password(portal_lab: PortalLab) -> None:
    set_config(portal_lab.engine, 1, {"l7r.auth.plugins": "totp"})
    set_totp_secret(portal_lab.engine, 1, portal_lab.seed.user_id, SECRET32)
    now, _previous, wrong = current_codes(SECRET32)
    refused = portal_lab.browser().log_in(password=PASSWORD + wrong)
    assert refused.status_code == 401
    assert "wrong one-time code" in refused.text
    bare = portal_lab.browser().log_in(password=PASSWORD)
    assert bare.status_code == 401
    assert "one-time code" in bare.text
    browser = portal_lab.browser()
    assert browser.log_in(password=PASSWORD + now).status_code == 303
    # the session is a token: the next requests need no code
    assert browser.get("/api/desktops").status_code == 200


def test_logout_ends_the_session(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    token = browser.token
    response = browser.post("/logout", {"csrf": browser.csrf})
    assert response.status_code == 303
    assert (
        'qvd-portal=""' in response.headers["set-cookie"]
        or "Max-Age=0" in response.headers["set-cookie"]
    )
    browser.token = token  # the old cookie, replayed
    assert browser.get("/api/desktops").status_code == 401
    assert 'form id="login"' in browser.get("/").text


def test_a_user_blocked_while_logged_in_is_refused_at_the_next_request(
    portal_lab: PortalLab,
) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    assert browser.get("/api/desktops").status_code == 200
    portal_lab.block_user("alice")
    assert browser.get("/api/desktops").status_code == 401
    assert browser.act(portal_lab.seed.vm_id, "start").status_code == 401
    assert portal_lab.runtime(portal_lab.seed.vm_id)["vm_cmd"] is None


def test_a_password_change_ends_the_session(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    with portal_lab.engine.begin() as conn:
        conn.execute(text("UPDATE users SET password = 'x' || password WHERE login = 'alice'"))
    assert browser.get("/api/desktops").status_code == 401


# ---- desktops -----------------------------------------------------------------------------
def test_the_list_holds_only_the_users_desktops(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    rows = browser.get("/api/desktops").json()
    assert [r["id"] for r in rows] == [portal_lab.seed.vm_id]
    assert rows[0] == {
        "id": portal_lab.seed.vm_id,
        "name": "alice-desk",
        "state": "stopped",
        "user_state": "disconnected",
        "blocked": False,
    }
    portal_lab.run_vm(portal_lab.seed.vm_id)
    assert browser.get("/api/desktops").json()[0]["state"] == "running"


def test_the_desktops_page_comes_with_its_rows(portal_lab: PortalLab) -> None:
    """The rows are in the page as served (no script, no /api/desktops before Connect
    shows): only the user's, with Connect a plain link to the session page, the name
    escaped; a blocked desktop's Connect has no target."""
    vm = portal_lab.seed.vm_id
    with portal_lab.engine.begin() as conn:
        conn.execute(text("UPDATE vms SET name = '<b>alice</b>' WHERE id = :v"), {"v": vm})
    browser = portal_lab.browser()
    browser.log_in()
    page = browser.get("/").text
    assert re.findall(r'<tr data-vm-id="(\d+)">', page) == [str(vm)]
    assert f'<a class="button" data-op="connect" href="/desktops/{vm}">Connect</a>' in page
    assert '<td data-field="name">&lt;b&gt;alice&lt;/b&gt;</td>' in page
    assert '<td data-field="state">stopped</td>' in page
    assert '<td data-field="user_state">disconnected</td>' in page
    assert re.search(r'data-op="start">Start', page)  # a stopped desktop may be started
    assert re.search(r'data-op="stop" disabled>Stop', page)
    assert '<p id="empty" class="muted" hidden>' in page
    with portal_lab.engine.begin() as conn:
        conn.execute(text("UPDATE vm_runtimes SET blocked = true WHERE vm_id = :v"), {"v": vm})
    page = browser.get("/").text
    assert f'href="/desktops/{vm}"' not in page
    assert 'data-op="connect" role="link" aria-disabled="true">Connect</a>' in page
    assert '<td data-field="state">stopped (blocked)</td>' in page


def test_not_logged_in_the_api_says_so(portal_lab: PortalLab) -> None:
    response = portal_lab.browser().get("/api/desktops")
    assert response.status_code == 401
    assert "not logged in" in response.json()["error"]


def test_start_stop_restart_follow_the_rules(portal_lab: PortalLab, hkd: HkdStandIn) -> None:
    vm = portal_lab.seed.vm_id
    browser = portal_lab.browser()
    browser.log_in()
    started = browser.act(vm, "start")
    assert started.status_code == 200, started.text
    assert started.json()["ok"] is True
    assert portal_lab.runtime(vm)["host_id"] == portal_lab.seed.host_id
    assert wait_for(lambda: portal_lab.runtime(vm)["vm_state"] == "running")
    assert (vm, "start") in hkd.seen
    stopped = browser.act(vm, "stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["message"] == "Machine stopped"
    assert portal_lab.runtime(vm)["vm_state"] == "stopped"
    browser.act(vm, "start")
    assert wait_for(lambda: portal_lab.runtime(vm)["vm_state"] == "running")
    hkd.seen.clear()
    restarted = browser.act(vm, "restart")
    assert restarted.status_code == 200, restarted.text
    assert wait_for(lambda: portal_lab.runtime(vm)["vm_state"] == "running")
    assert [cmd for _vm, cmd in hkd.seen][:2] == ["stop", "start"]


def test_stopping_a_stopped_desktop_says_so(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    response = browser.act(portal_lab.seed.vm_id, "stop")
    assert response.status_code == 200
    assert response.json()["message"] == "Machine stopped"


def test_a_blocked_desktop_cannot_be_started(portal_lab: PortalLab) -> None:
    vm = portal_lab.seed.vm_id
    with portal_lab.engine.begin() as conn:
        conn.execute(text("UPDATE vm_runtimes SET blocked = true WHERE vm_id = :v"), {"v": vm})
    browser = portal_lab.browser()
    browser.log_in()
    response = browser.act(vm, "start")
    assert response.status_code == 403
    assert "maintenance" in response.json()["error"]
    assert portal_lab.runtime(vm)["vm_cmd"] is None


def test_an_unknown_operation_or_id_is_404(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    assert browser.act(portal_lab.seed.vm_id, "destroy").status_code == 404
    assert browser.act(999999, "start").status_code == 404
    assert (
        browser.post("/api/desktops/abc/start", **{"x-csrf-token": browser.csrf}).status_code == 404
    )


def test_the_session_page_of_another_users_desktop_is_404(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    response = browser.get(f"/desktops/{portal_lab.seed.other_vm}")
    assert response.status_code == 404
    assert "does not exist or does not belong to alice" in response.text
    assert "bob-desk" not in response.text


# ---- static files -------------------------------------------------------------------------
def test_static_files_are_served_from_the_allow_list_only(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    css = browser.get("/static/css/portal.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = browser.get("/static/js/desktops.js")
    assert js.headers["content-type"].startswith("text/javascript")
    for path in (
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/css/../../app.py",
        "/static/../templates/base.html",
        "/vendor/novnc/package.json",
        "/vendor/novnc/../../package.json",
    ):
        assert browser.get(path).status_code == 404, path


def test_pages_are_never_stored_and_novnc_is_cached(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    assert browser.get("/").headers["cache-control"] == "no-store"
    assert browser.get("/static/js/desktops.js").headers["cache-control"] == "no-cache"
    rfb = browser.get("/vendor/novnc/core/rfb.js")
    assert rfb.status_code == 200
    assert rfb.headers["cache-control"] == "public, max-age=86400"


# ---- the browser session's WebSocket ----------------------------------------------------------
def test_websocket_runs_the_connect_flow_up_to_the_vnc_step(portal_lab: PortalLab) -> None:
    vm = portal_lab.seed.vm_id
    portal_lab.run_vm(vm)
    browser = portal_lab.browser()
    browser.log_in()
    outcome = browser.ws(f"/ws/desktops/{vm}?geometry=1024x768&keyboard=es")
    assert outcome.accepted
    assert f"Session acquired for VM_ID: {vm}" in outcome.progress
    assert any("Starting X session" in p for p in outcome.progress), outcome.texts
    # the stand-in agent serves no VNC: the session ends cleanly with the reason
    assert outcome.errors, outcome.texts
    assert outcome.close_code == 4503, outcome
    started = portal_lab.agent.starts[-1]
    assert started["geometry"] == "1024x768"
    assert started["keyboard"] == "pc105/es"
    # the session was released: the desktop is free for the next client
    assert wait_for(lambda: portal_lab.runtime(vm)["user_state"] == "disconnected")
    assert wait_for(lambda: not portal_lab.core.sessions.holds(vm))


def test_websocket_without_a_session_is_refused(portal_lab: PortalLab) -> None:
    outcome = portal_lab.browser().ws(f"/ws/desktops/{portal_lab.seed.vm_id}")
    assert outcome.close_code == 4403
    assert outcome.errors == ["not logged in (or the session ended)"]
    assert outcome.progress == []


def test_websocket_to_another_users_desktop_is_404(portal_lab: PortalLab) -> None:
    portal_lab.run_vm(portal_lab.seed.other_vm)
    browser = portal_lab.browser()
    browser.log_in()
    outcome = browser.ws(f"/ws/desktops/{portal_lab.seed.other_vm}")
    assert outcome.close_code == 4404
    assert "does not belong to alice" in outcome.errors[0]
    assert outcome.progress == []
    assert portal_lab.runtime(portal_lab.seed.other_vm)["user_state"] == "disconnected"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://127.0.0.1:1", None])
def test_websocket_from_another_origin_is_refused(
    portal_lab: PortalLab, origin: str | None
) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    outcome = browser.ws(f"/ws/desktops/{portal_lab.seed.vm_id}", origin=origin)
    assert outcome.close_code == 4403
    assert outcome.progress == []
    assert portal_lab.agent.start_calls == 0


def test_bad_geometry_or_keyboard_never_reaches_the_vm(portal_lab: PortalLab) -> None:
    """Only ``WxH`` and an xkb layout name pass to the VMA's x_start (it hands the
    keyboard to setxkbmap): anything else is dropped, the session still runs."""
    vm = portal_lab.seed.vm_id
    portal_lab.run_vm(vm)
    browser = portal_lab.browser()
    browser.log_in()
    query = "geometry=1024x768;id&keyboard=us%20-option%20x;rm%20-rf%20/"
    outcome = browser.ws(f"/ws/desktops/{vm}?{query}")
    assert outcome.progress, outcome
    started = portal_lab.agent.starts[-1]
    assert "geometry" not in started
    assert "keyboard" not in started


def test_the_session_page_of_ones_own_desktop(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    vm = portal_lab.seed.vm_id
    page = browser.get(f"/desktops/{vm}")
    assert page.status_code == 200
    assert f'data-vm-id="{vm}"' in page.text
    assert f'data-ws="/ws/desktops/{vm}"' in page.text
    assert 'id="keyboard"' in page.text
    assert '<option value="es"' in page.text
    assert browser.token not in page.text
    # the page's own script first and urgent (it opens the socket); noVNC's module
    # graph announced at once (no import waterfall) but behind it, and each is served
    head = page.text.index("</head>")
    script = page.text.index(
        '<script src="/static/js/session.js" type="module" fetchpriority="high">'
    )
    viewer = page.text.index(
        '<link rel="modulepreload" href="/static/js/viewer.js" fetchpriority="high">'
    )
    assert script < viewer < page.text.index("/vendor/novnc/") < head
    preloads = re.findall(
        r'<link rel="modulepreload" href="([^"]+)" fetchpriority="low">', page.text
    )
    assert "/vendor/novnc/core/rfb.js" in preloads
    assert any(url.startswith("/vendor/novnc/vendor/pako/") for url in preloads)
    for url in preloads:
        module = browser.get(url)
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")


@pytest.mark.l7r_config(**{"l7r.portal.session.timeout": "1"})
def test_a_session_ends_after_its_timeout(portal_lab: PortalLab) -> None:
    browser = portal_lab.browser()
    browser.log_in()
    with portal_lab.engine.connect() as conn:
        lifetime = conn.execute(
            text("SELECT max(expiration) - now() FROM user_tokens WHERE user_id = :u"),
            {"u": portal_lab.seed.user_id},
        ).scalar_one()
    assert lifetime.total_seconds() <= 1
    assert wait_for(lambda: browser.get("/api/desktops").status_code == 401, timeout=30)
    assert 'form id="login"' in browser.get("/").text
