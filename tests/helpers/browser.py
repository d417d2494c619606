"""Playwright driving Debian's Chromium for the browser tests, with screenshots on failure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.services import chromium_path, missing

CHROMIUM = chromium_path()
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BATCH_URL = re.compile(r"/batches/(\d+)/")

@pytest.fixture
def needs_chromium():
    """Skip (fail in CI) without Chromium on the PATH: install it with `make chromium`."""
    if CHROMIUM is None:
        missing("chromium is not on the PATH: install it with `make chromium`")


# The mark browser test modules put in `pytestmark`: needs_chromium for each of their tests.
chromium_missing = pytest.mark.usefixtures("needs_chromium")


PASSWORD = "pw-browser-123"


@pytest.fixture
def person(transactional_db):
    """The user a browser test logs in as (password PASSWORD)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("dana", password=PASSWORD)


@pytest.fixture
def fake():
    """The model the browser tests' workers reach; a row saying "poison" fails for good."""
    from batches.fake_gemini import FakeGemini

    with FakeGemini(fail_permanently=["poison"]) as server:
        yield server


@pytest.fixture
def worker(qclusters, fake):
    """A real qcluster against `fake` (test modules import `qclusters` from helpers.workers)."""
    return qclusters.start(fake.url)


@pytest.fixture
def browser_page(request, monkeypatch, live_server):
    """A fresh Chromium page; on failure the page, the dashboard and the last batch page are saved
    as screenshots under test-artifacts/."""
    # Playwright's sync API keeps an event loop in this thread; Django's ORM in the test body
    # runs beside it, never inside it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    failed_before = request.session.testsfailed
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      accept_downloads=True)
        context.set_default_timeout(20_000)
        page = context.new_page()
        visited: list[str] = []
        page.on("framenavigated",
                lambda frame: visited.append(frame.url) if frame == page.main_frame else None)
        try:
            yield page
        finally:
            if request.session.testsfailed > failed_before:
                _save_screenshots(context, page, visited, live_server.url, request.node.name)
            browser.close()


def _save_screenshots(context, page, visited: list[str], base_url: str, test_name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", test_name)
    shots = [("page", None), ("dashboard", f"{base_url}/")]
    batch_pages = [u for u in visited if BATCH_URL.search(u)]
    if batch_pages:
        shots.append(("batch", batch_pages[-1].split("?")[0]))
    for label, url in shots:
        try:
            target = page
            if url is not None:
                target = context.new_page()
                target.goto(url)
            target.screenshot(path=str(ARTIFACTS / f"{stem}-{label}.png"), full_page=True)
            (ARTIFACTS / f"{stem}-{label}.html").write_text(target.content())
        except Exception as exc:  # a screenshot must not hide the test's own failure
            print(f"could not save the {label} screenshot: {exc}")


def log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


SERIOUS_IMPACTS = ("serious", "critical")


def settled(page) -> None:
    """Wait until htmx has swapped and processed what it last received. htmx 2 binds the
    hx-* attributes of new content only when it settles (20 ms after the swap, the elements
    marked htmx-added until then), so a select changed at once would send nothing; a person
    is never that quick, a test is."""
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-added, .htmx-settling')")


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical accessibility violations on the page as it is now, one line
    each (rule, impact, the first offending elements)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    found = []
    for violation in results.response["violations"]:
        if violation.get("impact") in SERIOUS_IMPACTS:
            targets = [" ".join(map(str, node["target"])) for node in violation["nodes"][:3]]
            found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} "
                         f"at {', '.join(targets)}")
    return found


def assert_accessible(page, where: str) -> None:
    found = serious_violations(page)
    assert not found, f"axe found on {where}:\n" + "\n".join(found)
