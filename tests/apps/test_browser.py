"""Real browser: serve the apps headless on localhost, drive Debian Chromium, screenshot each page."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.browser

#: URL path of each page and a text its main element shows once it has rendered
PAGES = {
    "Slide_viewer": "Selected tile",
    "CT_viewer": "Sagittal",
    "Zero-shot_diagnosis": "Ontology context",
    "Retrieval": "similarity",
    "Survival": "survival table",
}


#: the page's script has finished (Streamlit shows its status widget only while running)
SCRIPT_DONE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
#: every image of the page has arrived from the media endpoint
IMAGES_LOADED = "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def open_page(browser, url: str, artifacts, name: str, expect: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    page.get_by_text(expect, exact=False).first.wait_for(timeout=120_000)
    page.wait_for_function(SCRIPT_DONE, timeout=120_000)
    page.wait_for_function(IMAGES_LOADED, timeout=60_000)
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


@pytest.mark.parametrize("name", list(PAGES))
def test_page_in_chromium(name, browser, served_app, artifacts):
    exceptions, body = open_page(browser, f"{served_app.url}/{name}", artifacts, name.lower(), PAGES[name])
    assert exceptions == 0, body
    assert "not for clinical use" in body


def test_survival_page_with_table_in_chromium(browser, survival_app, artifacts):
    exceptions, body = open_page(browser, f"{survival_app.url}/Survival", artifacts, "survival_km", "log-rank p")
    assert exceptions == 0, body
    assert "C-index" in body and "TCGA-" not in body


def test_eight_simultaneous_users(browser, served_app):
    """Eight separate browser sessions open pages at the same time; each gets its own correct page, in bounded time."""
    names = [*PAGES, *PAGES][:8]
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in names]
    pages = [ctx.new_page() for ctx in contexts]
    start = time.monotonic()
    try:
        for page, name in zip(pages, names, strict=True):  # all sessions start before any is awaited
            page.goto(f"{served_app.url}/{name}", wait_until="commit", timeout=60_000)
        for page, name in zip(pages, names, strict=True):
            page.get_by_text(PAGES[name], exact=False).first.wait_for(timeout=180_000)
            assert page.locator('[data-testid="stException"]').count() == 0, name
            assert "not for clinical use" in page.inner_text("body")
        elapsed = time.monotonic() - start
    finally:
        for ctx in contexts:
            ctx.close()
    assert elapsed < 240, f"8 users took {elapsed:.0f} s"


def test_health_under_concurrent_http(served_app):
    """The server answers many concurrent HTTP requests (health and page HTML) while sessions run."""
    import urllib.request

    def fetch(path: str) -> int:
        with urllib.request.urlopen(f"{served_app.url}{path}", timeout=30) as resp:
            return resp.status

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(fetch, ["/_stcore/health", "/", "/Slide_viewer", "/CT_viewer"] * 4))
    assert codes == [200] * 16
