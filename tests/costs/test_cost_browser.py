"""Cost in a real browser: the estimate before creating, the spend growing, a budget pausing the
batch and raising it letting it finish (Chromium, a live server, a real qcluster, the fake)."""

import pytest
from django.contrib.auth import get_user_model

from batches.fake_gemini import FakeGemini
from batches.models import Batch
from tests.helpers import costs as cost_helpers
from tests.helpers.browser import browser_page, chromium_missing, log_in  # noqa: F401
from tests.helpers.workers import qclusters  # noqa: F401

prices = cost_helpers.prices

pytestmark = [pytest.mark.browser, chromium_missing, pytest.mark.usefixtures("prices")]

PASSWORD = "pw-browser-123"


@pytest.fixture
def person(transactional_db):
    return get_user_model().objects.create_user("erin", password=PASSWORD)


def test_estimate_then_a_budget_pauses_the_batch_and_raising_it_finishes_it(
        browser_page, live_server, person, qclusters, tmp_path, settings):  # noqa: F811
    from playwright.sync_api import expect

    settings.GEMINI_API_KEY = "test-key"
    with FakeGemini(latency_ms=50, thinking_tokens=300) as fake:
        settings.GEMINI_BASE_URL = fake.url
        qclusters.start(fake.url)
        page, base = browser_page, live_server.url
        source = tmp_path / "notes.csv"
        source.write_text("note\n" + "".join(f"parcel {i} arrived late\n" for i in range(40)))
        log_in(page, base, "erin", PASSWORD)
        page.goto(f"{base}/batches/new/")
        page.set_input_files("#id_file", str(source))
        page.fill("#id_prompt", "Classify: {{note}}")
        page.select_option("#id_model", "gemini-2.5-pro")
        page.select_option("#id_thinking", "default")
        page.click("#estimate-button")
        expect(page.locator("#estimate-result")).to_contain_text(
            "Estimate for 40 rows on gemini-2.5-pro (an estimate, from countTokens on 20 of 40")
        expect(page.locator("#estimate-result")).to_contain_text("in batch mode")
        assert Batch.objects.count() == 0

        page.fill("#id_budget", "0.02")
        page.click("text=Create batch")
        page.wait_for_url("**/batches/*/")
        expect(page.locator("#batch-progress .badge")).to_have_text("paused", timeout=60_000)
        expect(page.locator("#batch-notes")).to_contain_text(
            "Budget reached: $0.02 of $0.02 spent; raise the budget to continue.")
        expect(page.locator("#spent")).to_have_text("$0.02")

        page.fill("#budget-input", "1.00")
        page.click("text=Set budget")
        expect(page.locator("#batch-progress .badge")).to_have_text("completed",
                                                                   timeout=60_000)
        batch = Batch.objects.get()
        assert batch.cost_spent > 0 and batch.budget == 1
        expect(page.locator("#spent")).to_have_text(f"${batch.cost_spent:.2f}")
