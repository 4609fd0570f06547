"""The portal in a real headless Chromium (Debian's ``chromium``, driven by Playwright;
Playwright never downloads a browser here): sign in, find a case, generate a report,
download it, and check the zip with ``auditor verify``. Screenshots of every page at
1280 and 390 px go to $PORTAL_SCREENSHOTS when set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.report.world import secret_prompt
from tests.web.conftest import PASSWORD, Live, start_portal

CHROMIUM = os.environ.get("PORTAL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (it comes with the dev extras: scripts/test)"
    if not Path(CHROMIUM).exists():
        return (f"no Chromium at {CHROMIUM}: install Debian's `chromium` (scripts/test does "
                "when run as root) or point PORTAL_CHROMIUM at one")
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_skip_reason() is not None,
                                                   reason=_skip_reason() or "")]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    yield from start_portal(tmp_path)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def _shots() -> Path | None:
    d = os.environ.get("PORTAL_SCREENSHOTS")
    if not d:
        return None
    Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d)


def _shoot(page: Any, name: str) -> None:
    """Screenshots of the current page at 1280 and 390 px (when asked for)."""
    shots = _shots()
    if shots is None:
        return
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def _sign_in(page: Any, url: str, user: str) -> None:
    page.goto(f"{url}/signin")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/cases")


def test_sign_in_find_a_case_generate_download_and_verify(live: Live, browser: Any,
                                                           tmp_path: Path) -> None:
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _sign_in(page, live.url, "legal")
    page.get_by_label("Find").fill("sus")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name="sus", exact=True).click()
    page.wait_for_url(f"{live.url}/cases/sus/prot")
    assert "tested against" in page.inner_text("h1")
    page.get_by_role("button", name="Generate signed report").click()
    page.wait_for_selector("#job-done, #job-failed", timeout=240_000)
    assert page.locator("#job-done").count() == 1, page.inner_text("main")
    _shoot(page, "job")
    with page.expect_download() as info:
        page.locator("#download").click()
    zip_path = tmp_path / info.value.suggested_filename
    info.value.save_as(zip_path)
    done = subprocess.run([sys.executable, "-m", "auditor", "verify", str(zip_path)],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("AUDITOR_")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bundle ok" in done.stdout
    page.get_by_role("button", name="Verify").click()
    assert "Verified." in page.inner_text("#verify-result")
    _shoot(page, "verify")
    page.goto(f"{live.url}/cases/nobody/nothing")
    assert "Not found" in page.inner_text("h1")
    _shoot(page, "error")
    page.get_by_role("link", name="Custody log").click()
    assert "download" in page.inner_text("table.custody")
    _shoot(page, "custody-filled")
    page.goto(f"{live.url}/cases/sus/prot")
    assert page.locator("code.hash").count() >= 1  # the bundle, by its manifest hash
    _shoot(page, "case-with-bundle")
    assert not [e for e in errors if "Content Security Policy" in e], errors
    ctx.close()


PAGES = ("/signin", "/cases", "/cases/sus/prot", "/custody", "/admin")


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_renders_without_overflow_or_secrets(live: Live, browser: Any,
                                                         width: int) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    shots = _shots()
    if shots:
        page.goto(f"{live.url}/signin")
        page.screenshot(path=str(shots / f"signin-{width}.png"), full_page=True)
    _sign_in(page, live.url, "admin")
    for path in PAGES[1:]:
        page.goto(live.url + path)
        assert page.title() and "Not found" not in page.title()
        html = page.content()
        assert all(secret_prompt(i) not in html for i in range(8))
        # nothing wider than the window: the page never scrolls sideways
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than {width}px"
        if shots:
            name = path.strip("/").replace("/", "-") or "home"
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    assert not errors, errors
    ctx.close()
