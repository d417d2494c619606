"""The pages in a real browser (Debian's Chromium through Playwright) against a live server, a real
qcluster worker and a FakeGemini."""

import csv
import io
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from batches.fake_gemini import FakeGemini
from batches.models import Batch
from batches.services import batch_create
from tests.helpers.browser import browser_page, log_in, needs_chromium  # noqa: F401
from tests.helpers.workers import qclusters, wait_for_batch  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("needs_chromium")]

PASSWORD = "pw-browser-123"


@pytest.fixture
def person(transactional_db):
    return get_user_model().objects.create_user("dana", password=PASSWORD)


@pytest.fixture
def fake():
    with FakeGemini(fail_permanently=["poison"]) as server:
        yield server


@pytest.fixture
def worker(qclusters, fake):  # noqa: F811
    return qclusters.start(fake.url)


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["city", "note"])
        writer.writerows(rows)
    return path


def test_upload_preview_run_filter_retry_and_download(
    browser_page, live_server, person, fake, worker, tmp_path  # noqa: F811
):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    cities = ["Lyon", "Porto", "Oslo", "Quito", "poison city", "Accra"]
    source = write_csv(tmp_path / "cities.csv", [[c, f"note {i}"] for i, c in enumerate(cities)])
    log_in(page, base, "dana", PASSWORD)
    expect(page.locator("body")).to_contain_text("No batches yet")

    page.click("text=Create your first batch")
    page.set_input_files("#id_file", str(source))
    expect(page.locator("#preview-columns")).to_contain_text("city")
    page.fill("#id_prompt", "Describe ")
    page.locator("#id_prompt").press("End")
    page.click("[data-insert-column=city]")
    expect(page.locator("#id_prompt")).to_have_value("Describe {{city}}")
    expect(page.locator("#preview-prompts pre")).to_have_count(3)
    expect(page.locator("#preview-prompts")).to_contain_text("Describe Lyon")
    page.locator("#id_prompt").press_sequentially(" {{weather}}")
    expect(page.locator("#preview-unknown")).to_contain_text("{{weather}}")
    page.fill("#id_prompt", "Describe {{city}}")
    expect(page.locator("#preview-unknown")).to_have_count(0)

    page.click("text=Create batch")
    page.wait_for_url("**/batches/*/")
    batch = Batch.objects.get(owner=person)
    expect(page.locator(".messages")).to_contain_text("Created “cities” with 6 rows.")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#progress-percent")).to_have_text("100%", timeout=60_000)
    expect(page.locator("#batch-progress .badge")).to_have_text("completed with errors")
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#batch-progress")).not_to_have_attribute("hx-trigger", "every 2s")
    expect(page.locator("#count-failed")).to_have_text("1")
    # The results table was refreshed when the batch ended, still without a reload.
    expect(page.locator("#row-0")).to_contain_text("ECHO: Describe Lyon")

    page.click(".filters >> text=failed")
    expect(page.locator(".results-table tbody tr")).to_have_count(1)
    failed_row = page.locator("#row-4")
    expect(failed_row).to_contain_text("poison city")
    expect(failed_row).to_contain_text("failed")
    assert page.url.endswith("?status=failed")

    fake.configure(fail_permanently=())
    failed_row.locator("text=Retry").click()
    expect(page.locator(".messages")).to_contain_text("Retrying row 4.")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#count-failed")).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True
    batch.refresh_from_db()
    assert batch.status == "completed"

    with page.expect_download() as download_info:
        page.click("#batch-actions >> text=CSV")
    download = download_info.value
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert len(exported) == 6
    by_city = {r["city"]: r for r in exported}
    assert by_city["poison city"]["output"] == "ECHO: Describe poison city"
    assert by_city["Oslo"]["output"] == "ECHO: Describe Oslo"
    assert {r["status"] for r in exported} == {"succeeded"}


def test_cancelling_a_long_batch_stops_it(browser_page, live_server, person, fake,  # noqa: F811
                                          worker):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    fake.configure(latency_ms=400)
    batch = batch_create(owner=person, prompt="Slow {{n}}", concurrency=2, name="Long one",
                         rows=[{"n": i} for i in range(200)])
    log_in(page, base, "dana", PASSWORD)
    expect(page.locator("#dashboard-rows")).to_contain_text("Long one")
    page.click("text=Long one")
    expect(page.locator("#batch-progress .badge")).to_have_text("running", timeout=30_000)
    expect(page.locator("#count-succeeded")).not_to_have_text("0", timeout=30_000)

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Cancel batch")
    expect(page.locator(".messages")).to_contain_text("Cancelled")
    expect(page.locator("#batch-progress .badge")).to_have_text("cancelled", timeout=30_000)
    expect(page.locator("#batch-actions")).not_to_contain_text("Cancel batch")
    expect(page.locator("#batch-actions")).to_contain_text("Resume")

    batch = wait_for_batch(batch.pk, timeout=30)
    counts = batch.status_counts()
    assert batch.status == "cancelled"
    assert counts["pending"] == counts["running"] == 0
    assert counts["cancelled"] > 0
    # Every row that ran was sent once, and no row was sent after the cancel.
    assert fake.stats.total == counts["succeeded"] + counts["failed"]
