"""Iterating in a real browser: Save as draft from the new-batch page, try a few rows, start,
see the cached rows in the results table and re-run chosen rows (Debian's Chromium through
Playwright, a live server, a real qcluster worker and a FakeGemini)."""

import pytest

from batches.models import Batch
from tests.helpers.browser import (  # noqa: F401
    assert_accessible,
    browser_page,
    chromium_missing,
    log_in,
)
from tests.helpers.workers import qclusters, wait_for_batch  # noqa: F401
from tests.web.test_browser_pages import PASSWORD, fake, person, worker, write_csv  # noqa: F401

pytestmark = [pytest.mark.browser, chromium_missing]


def test_a_draft_is_tried_on_two_rows_started_and_its_sample_rows_come_from_the_cache(
    browser_page, live_server, person, fake, worker, tmp_path  # noqa: F811
):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    log_in(page, base, "dana", PASSWORD)
    page.goto(f"{base}/batches/new/")
    source = write_csv(tmp_path / "notes.csv", ["text"], [[f"note {i}"] for i in range(5)])
    page.set_input_files("#id_file", str(source))
    expect(page.locator("#preview-columns")).to_contain_text("text")
    page.fill("#id_prompt", "Echo {{text}}")
    expect(page.locator("#save-draft")).to_be_enabled()
    page.click("#save-draft")
    page.wait_for_url("**/batches/*/")
    batch = Batch.objects.get(owner=person)
    assert batch.status == Batch.Status.DRAFT
    expect(page.locator("#draft-panel")).to_be_visible()
    assert_accessible(page, "a draft's batch page")

    page.fill("#id_size", "2")
    page.click("#try-sample")
    expect(page.locator("#sample-rows")).to_contain_text("Sample done.", timeout=60_000)
    expect(page.locator("#sample-rows tbody tr")).to_have_count(2)
    expect(page.locator("#sample-rows")).to_contain_text("ECHO: Echo note 1")
    calls = fake.stats.total
    assert calls == 2

    page.click("#start-batch")
    expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
    # The results table shows the final rows once the batch ends: the sample's two are cached.
    expect(page.locator("#result-rows .badge-cached")).to_have_count(2)
    expect(page.locator("#cache-figures")).to_contain_text("2")
    assert fake.stats.total == calls + 3

    page.check("#result-rows tr >> nth=0 >> input[name=indexes]")
    page.click("#rerun-form button[value=selected]")
    expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
    wait_for_batch(batch.pk, timeout=60)
    first = batch.results.get(index=0)
    assert not first.cached and fake.stats.total == calls + 4
    assert_accessible(page, "a finished batch page with re-run checkboxes")
