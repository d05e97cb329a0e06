"""Disk images in a real browser: an upload watched to 100 % that opens the new DI, a
cancelled upload that leaves no file and no DI, a tag moved by the select form and by
drag and drop with the affected VMs listed first (roll forward and back), and axe-core
on every page of the area."""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from qvd.db.models import Di, DiRuntime, DiTag, VmRuntime
from tests.api.services.test_dis import tarball
from tests.wat.browser.conftest import (
    BrowserPage,
    LiveWat,
    axe_violations,
    keep_screenshot,
    log_in,
)

RECORD_PROGRESS = """() => {
  const bar = document.getElementById("upload-progress");
  const seen = [];
  new MutationObserver(() => {
    seen.push(Number(bar.value));
    sessionStorage.setItem("progress", JSON.stringify(seen));
    sessionStorage.setItem("percent", document.getElementById("upload-percent").textContent);
  }).observe(bar, {attributes: true, childList: true, characterData: true, subtree: true});
}"""


def _big_tarball(size: int) -> bytes:
    """A tarball of ``size`` bytes of incompressible data (never imported: cancelled)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("blob")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


def _dis_of(live: LiveWat, osf_id: int) -> list[str]:
    with Session(live.engine) as s:
        return list(s.scalars(select(Di.version).where(Di.osf_id == osf_id).order_by(Di.id)))


def _spools(live: LiveWat) -> list[Path]:
    folder = live.tmp / "storage" / "images"
    return list(folder.glob(".upload-*")) if folder.exists() else []


def test_upload_shows_progress_to_100_and_opens_the_new_di(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    log_in(browser_page, "adminA", "tenantA")
    browser_page.goto("/dis/new")
    page.wait_for_selector("#upload-submit:not([disabled])")
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "di-upload", ("Upload a disk image", "Image file"))
    page.select_option("#f-osf_id", str(live_wat.world.osfs["A"]))
    page.fill("#f-version", "v2")
    page.set_input_files(
        "#f-file",
        files=[{"name": "desk.tar.gz", "mimeType": "application/gzip", "buffer": tarball()}],
    )
    page.evaluate(RECORD_PROGRESS)
    page.click("#upload-submit")
    page.wait_for_url(re.compile(r".*/dis/[0-9]+$"), timeout=30000)
    page.wait_for_selector("h1")
    assert page.inner_text("h1").endswith("-desk.tar.gz")
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('progress') || '[]')")
    assert max(seen) == 100, seen
    assert page.evaluate("sessionStorage.getItem('percent')") == "100%"
    assert "published" in page.inner_text("dl.details")
    assert _dis_of(live_wat, live_wat.world.osfs["A"]) == ["v1", "v2"]
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "di-detail", ("v2", "published", "Tags"))
    browser_page.goto("/dis")
    page.wait_for_selector("table#list tbody tr[data-id]")
    assert page.locator("table#list tbody tr[data-id]").count() == 2
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "dis", ("Disk images", "imageA.tar", "desk.tar.gz"))


def test_a_refused_upload_shows_the_apis_message(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    browser_page.allow(r"status of 409")  # the refused XHR, logged by Chromium
    page = browser_page.page
    log_in(browser_page, "adminA", "tenantA")
    browser_page.goto("/dis/new")
    page.wait_for_selector("#upload-submit:not([disabled])")
    page.fill("#f-version", "v1")  # the OSF has a DI v1 already
    page.set_input_files(
        "#f-file",
        files=[{"name": "desk.tar.gz", "mimeType": "application/gzip", "buffer": tarball()}],
    )
    page.click("#upload-submit")
    page.wait_for_selector("#upload-message.error")
    assert "already exists" in page.inner_text("#upload-message")
    assert _dis_of(live_wat, live_wat.world.osfs["A"]) == ["v1"]


def test_a_cancelled_upload_leaves_no_file_and_no_di(
    browser_page: BrowserPage, live_wat: LiveWat
) -> None:
    browser_page.allow(r"requestfailed: .*/api/v1/dis/upload")  # the aborted XHR
    page = browser_page.page
    log_in(browser_page, "adminA", "tenantA")
    browser_page.goto("/dis/new")
    page.wait_for_selector("#upload-submit:not([disabled])")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1,
         "uploadThroughput": 512 * 1024},
    )  # fmt: skip
    page.fill("#f-version", "big")
    page.set_input_files(
        "#f-file",
        files=[{"name": "big.tar", "mimeType": "application/x-tar",
                "buffer": _big_tarball(12 << 20)}],
    )  # fmt: skip
    page.click("#upload-submit")
    page.wait_for_selector("#upload-cancel:not([hidden])")
    deadline = time.monotonic() + 30
    while not _spools(live_wat):  # the API is writing the file: the upload is under way
        assert time.monotonic() < deadline, "the upload never reached the API"
        time.sleep(0.1)
    page.wait_for_function(
        "() => Number(document.getElementById('upload-progress').value) > 0", timeout=30000
    )
    page.click("#upload-cancel")
    page.wait_for_selector("#upload-message:has-text('cancelled')")
    assert page.locator("#upload-cancel").is_hidden()
    assert page.evaluate("document.getElementById('upload-progress').value") == 0
    deadline = time.monotonic() + 30
    while _spools(live_wat):  # the API saw the client go and removed its file
        assert time.monotonic() < deadline, f"left behind: {_spools(live_wat)}"
        time.sleep(0.2)
    assert _dis_of(live_wat, live_wat.world.osfs["A"]) == ["v1"]
    images = live_wat.tmp / "storage" / "images"
    assert not images.exists() or list(images.iterdir()) == []


def _second_di(live: LiveWat) -> int:
    """A published DI v2 for osfA (next to the world's v1), and vmA running v1."""
    osf = live.world.osfs["A"]
    with Session(live.engine) as s, s.begin():
        di = Di(osf_id=osf, path="imageA2.tar", version="v2", pending_tags=[])
        s.add(di)
        s.flush()
        s.add(DiTag(di_id=di.id, tag="v2", fixed=True))
        s.execute(update(DiRuntime).where(DiRuntime.di_id == di.id).values(state="published"))
        s.execute(
            update(VmRuntime)
            .where(VmRuntime.vm_id == live.world.vms["A"])
            .values(vm_state="running", current_di_id=live.world.dis["A"], host_id=live.world.host)
        )
        return di.id


def _holder(live: LiveWat, tag: str) -> int | None:
    with Session(live.engine) as s:
        return s.scalar(
            select(DiTag.di_id).where(DiTag.osf_id == live.world.osfs["A"], DiTag.tag == tag)
        )


def test_move_default_by_drag_then_back_with_the_form(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    old, new = live_wat.world.dis["A"], _second_di(live_wat)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    log_in(browser_page, "adminA", "tenantA")
    browser_page.goto(f"/osfs/{live_wat.world.osfs['A']}/tags")
    page.wait_for_selector("#tag-preview")
    assert axe_violations(page) == []
    chip = page.locator(f'.di-card[data-di-id="{old}"] [data-tag="default"]')
    chip.drag_to(page.locator(f'.di-card[data-di-id="{new}"] h2'))
    assert page.input_value("#f-tag") == "default"
    assert page.input_value("#f-di_id") == str(new)
    page.wait_for_selector("#tag-preview-vms tbody tr[data-id] >> text=vmA")
    keep_screenshot(page, evidence_dir, "di-tags-preview", ("Tags of osfA", "vmA", "default"))
    page.fill("#f-expire_soft", "2031-01-02T03:04")
    page.click("#tag-move-submit")
    page.wait_for_selector(".flash.ok >> text=is now on version v2")
    assert "Expiry set on 1 VMs" in page.inner_text("main")
    assert page.locator(f'.di-card[data-di-id="{new}"] [data-tag="default"]').count() == 1
    assert _holder(live_wat, "default") == new
    with Session(live_wat.engine) as s:
        soft = s.get_one(VmRuntime, live_wat.world.vms["A"]).vm_expiration_soft
        assert soft is not None
        assert soft.isoformat().startswith("2031-01-02T03:04")

    # roll back with the keyboard-friendly form: vmA already runs v1, so nobody is affected
    page.select_option("#f-tag", "default")
    page.select_option("#f-di_id", str(old))
    page.wait_for_selector("#tag-preview >> text=No running VM is affected.")
    page.focus("#tag-move-submit")
    page.keyboard.press("Enter")
    page.wait_for_selector(".flash.ok >> text=is now on version v1")
    assert page.locator(f'.di-card[data-di-id="{old}"] [data-tag="default"]').count() == 1
    assert _holder(live_wat, "default") == old
    assert axe_violations(page) == []
    previews = [u for u in urls if "/tags/preview" in u]
    assert len(previews) >= 2
    assert not [u for u in previews if "csrf" in u]  # the token never goes into a URL


def test_di_page_and_staging_page_are_accessible(
    browser_page: BrowserPage, live_wat: LiveWat, evidence_dir: Path
) -> None:
    page = browser_page.page
    staging = live_wat.tmp / "storage" / "staging" / str(live_wat.world.tenants["A"])
    staging.mkdir(parents=True)
    (staging / "gold.tar.gz").write_bytes(tarball())
    log_in(browser_page, "adminA", "tenantA")
    browser_page.goto(f"/dis/{live_wat.world.dis['A']}")
    page.wait_for_selector("#edit")
    assert page.inner_text("h1") == "imageA.tar"
    assert "vmA" in page.inner_text("#di-vms")
    assert axe_violations(page) == []
    browser_page.goto("/dis/staging")
    page.wait_for_selector("#staging-submit:not([disabled])")
    assert axe_violations(page) == []
    keep_screenshot(page, evidence_dir, "di-staging", ("Import from staging", "gold.tar.gz"))
    page.fill("#f-version", "gold")
    page.click("#staging-submit")
    page.wait_for_selector("#staging-new-di")
    page.click("#staging-new-di")
    page.wait_for_selector("h1")
    assert page.inner_text("h1").endswith("-gold.tar.gz")
    assert "gold" in _dis_of(live_wat, live_wat.world.osfs["A"])
