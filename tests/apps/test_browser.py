"""Real browser: serve the apps headless on localhost, drive Debian Chromium, screenshot each page."""

import pytest

pytestmark = pytest.mark.browser


def open_page(browser, url: str, artifacts, name: str, expect: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    page.get_by_text(expect, exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]').count()
    body = page.inner_text("body")
    page.close()
    return exceptions, body


def test_home_page_in_chromium(browser, served_app, artifacts):
    exceptions, body = open_page(browser, served_app.url, artifacts, "home", "not for clinical use")
    assert exceptions == 0, body
    assert "Workspace" in body
