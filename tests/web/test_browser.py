"""The pages in a real browser (Debian's Chromium through Playwright) against a live server, a real
qcluster worker and a FakeGemini."""

import csv
import io
import re
from pathlib import Path

import pytest

from batches.models import Batch
from batches.services import batch_create
from tests.helpers.browser import (  # noqa: F401
    PASSWORD,
    browser_page,
    fake,
    log_in,
    needs_chromium,
    person,
    worker,
)
from tests.helpers.workers import qclusters, wait_for_batch  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("needs_chromium")]



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
    # The row number is the file's line: the header is line 1, so the fifth city is line 6.
    expect(failed_row.locator(".row-number")).to_have_text("6")

    fake.configure(fail_permanently=())
    page.set_viewport_size({"width": 1280, "height": 480})  # room to scroll
    page.evaluate("window.notReloaded = true")
    failed_row.locator("text=Retry").scroll_into_view_if_needed()
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    failed_row.locator("text=Retry").click()
    # Retried in place: pending first, then its answer, still under the failed filter.
    expect(page.locator("#row-4")).to_contain_text("ECHO: Describe poison city", timeout=60_000)
    expect(page.locator("#row-4 .badge")).to_have_text("succeeded")
    expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#count-failed")).to_have_text("0")
    expect(page.locator(".filter[data-filter=failed] .count")).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True
    # Still where the user was (the page may end a few pixels sooner now the error is gone).
    assert abs(page.evaluate("window.scrollY") - scrolled) < 60
    batch.refresh_from_db()
    assert batch.status == "completed"

    page.click(".filters >> text=all")
    expect(page.locator(".results-table tbody tr")).to_have_count(6)
    with page.expect_download() as download_info:
        page.click("#result-downloads >> text=CSV")
    download = download_info.value
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert len(exported) == 6
    assert text.startswith("row,city,note,output")
    by_city = {r["city"]: r for r in exported}
    assert by_city["poison city"]["output"] == "ECHO: Describe poison city"
    assert by_city["poison city"]["row"] == "6"
    assert by_city["Oslo"]["output"] == "ECHO: Describe Oslo"
    assert {r["status"] for r in exported} == {"succeeded"}


def test_the_results_table_follows_the_counters_while_the_batch_runs(
    browser_page, live_server, person, fake, worker  # noqa: F811
):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    fake.configure(latency_ms=300)
    batch = batch_create(owner=person, prompt="Slow {{n}}", concurrency=2, name="Live one",
                         rows=[{"n": i} for i in range(24)])
    log_in(page, base, "dana", PASSWORD)
    page.goto(f"{base}/batches/{batch.pk}/")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#row-0 .badge")).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("#row-0")).to_contain_text("ECHO: Slow 0")
    # Counters, chips and rows come from one poll, so they agree whenever the page is read.
    for _ in range(5):
        counter, chip, shown = page.evaluate("""() => [
            document.getElementById('count-succeeded').textContent.trim(),
            document.querySelector('.filter[data-filter=succeeded] .count').textContent.trim(),
            document.querySelectorAll('#result-rows tr[data-status=succeeded]').length]""")
        assert counter == chip, (counter, chip)
        assert int(chip) == shown, (chip, shown)
        page.wait_for_timeout(700)
    expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#result-rows tr[data-status=succeeded]")).to_have_count(24)
    expect(page.locator(".filter[data-filter=pending] .count")).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True


def test_cancelling_a_long_batch_stops_it(browser_page, live_server, person, fake,  # noqa: F811
                                          worker):  # noqa: F811
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
    summary = page.locator("#progress-summary").text_content()
    expect(page.locator("#progress-percent")).not_to_have_text("100%")

    batch = wait_for_batch(batch.pk, timeout=30)
    counts = batch.status_counts()
    ran = counts["succeeded"] + counts["failed"]
    assert summary == f"{ran} of 200 processed · {counts['cancelled']} cancelled"
    run_rest = page.locator("#run-cancelled button")
    expect(run_rest).to_have_text(f"Run the {counts['cancelled']} cancelled rows")

    assert batch.status == "cancelled"
    assert counts["pending"] == counts["running"] == 0
    assert counts["cancelled"] > 0
    # Every row that ran was sent once, and no row was sent after the cancel.
    assert fake.stats.total == counts["succeeded"] + counts["failed"]

    fake.configure(latency_ms=0)
    run_rest.click()
    expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#progress-summary")).to_have_text("200 of 200 processed")

def test_columns_output_from_the_field_editor_fills_one_column_per_field(
    browser_page, live_server, person, fake, worker  # noqa: F811
):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    reviews = Path(__file__).resolve().parents[2] / "batches" / "demo" / "reviews.csv"
    log_in(page, base, "dana", PASSWORD)
    page.goto(f"{base}/batches/new/")
    page.set_input_files("#id_file", str(reviews))
    expect(page.locator("#preview-columns")).to_contain_text("review")
    page.fill("#id_prompt", "Classify: {{review}}")

    expect(page.locator("#output-columns")).to_be_hidden()
    page.check("input[name=output_mode][value=columns]")
    expect(page.locator("#output-columns")).to_be_visible()
    rows = page.locator("#field-rows tr")
    rows.nth(0).locator("input[name=field_name]").fill("sentiment")
    rows.nth(0).locator("select[name=field_type]").select_option("enum")
    rows.nth(0).locator("input[name=field_values]").fill("positive, mixed, negative")
    page.click("[data-add-field]")
    rows.nth(1).locator("input[name=field_name]").fill("score")
    rows.nth(1).locator("select[name=field_type]").select_option("integer")
    page.click("[data-add-field]")
    rows.nth(2).locator("input[name=field_name]").fill("review")
    expect(page.locator("#preview-output-error")).to_contain_text(
        "has the name of an input column")
    rows.nth(2).locator("input[name=field_name]").fill("reasons")
    rows.nth(2).locator("select[name=field_type]").select_option("list")
    expect(page.locator("#preview-output li")).to_have_count(3)
    expect(page.locator("#preview-output")).to_contain_text("one of (positive, mixed, negative)")

    page.check("#id_output_advanced")
    expect(page.locator("#id_output_schema")).to_have_value(
        re.compile(r'"sentiment": \{\s*"type": "string",\s*"enum"'))
    expect(page.locator("#field-editor")).to_be_hidden()
    page.uncheck("#id_output_advanced")
    expect(page.locator("#field-editor")).to_be_visible()
    page.locator("#field-rows tr").nth(2).locator("[data-remove-field]").click()
    expect(page.locator("#preview-output li")).to_have_count(2)

    page.click("text=Create batch")
    page.wait_for_url("**/batches/*/")
    batch = Batch.objects.get(owner=person)
    assert [f.name for f in batch.output_fields] == ["sentiment", "score"]
    expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
    expect(page.locator(".results-table thead")).to_contain_text("sentiment")
    expect(page.locator("#summary-score")).to_contain_text("median")
    first = batch.results.get(index=0)
    expect(page.locator("#row-0")).to_contain_text(first.data["sentiment"])
    expect(page.locator("#row-0")).to_contain_text("Trail running shoes")  # an input column


def test_the_progress_poll_keeps_the_search_in_the_downloads_and_chips(
    browser_page, live_server, person  # noqa: F811
):
    from urllib.parse import parse_qs, urlencode, urlsplit

    from tests.helpers.api import orm_batch

    page, base = browser_page, live_server.url
    search = 'wine & "dry" #1'
    said = f"red {search} cheese"
    # Running with no worker: the progress card polls and nothing else changes.
    batch = orm_batch(person, [{"text": t} for t in ("a", "b", "c", "d")], status="running",
                      statuses=["succeeded", "failed", "failed", "pending"],
                      outputs=[said, said, "water", ""])
    log_in(page, base, "dana", PASSWORD)
    page.goto(f"{base}/batches/{batch.pk}/?{urlencode({'status': 'failed', 'q': search})}")
    page.evaluate("document.getElementById('result-downloads').dataset.before = 'poll'")
    with page.expect_response(lambda r: "/progress/" in r.url, timeout=10_000) as polled:
        pass
    assert parse_qs(urlsplit(polled.value.url).query)["view_q"] == [search]
    # The poll swapped the downloads in anew; they still export the searched view.
    page.wait_for_function("!document.getElementById('result-downloads').dataset.before")
    link = page.locator("#result-downloads >> text=CSV").get_attribute("href")
    assert parse_qs(urlsplit(link).query) == {"format": ["csv"], "status": ["failed"],
                                              "q": [search]}
    chip = page.locator(".filter[data-filter=succeeded]").get_attribute("href")
    assert parse_qs(urlsplit(chip).query) == {"status": ["succeeded"], "q": [search]}
    with page.expect_download() as download_info:
        page.click("#result-downloads >> text=CSV")
    text = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    assert [(r["text"], r["status"]) for r in csv.DictReader(io.StringIO(text))] == [
        ("b", "failed")]
