"""Cost on the pages: thinking and budget on the new-batch page, the estimate fragment, spend
and the budget form on the batch page, the month on the dashboard."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from batches.models import Batch, StagedUpload, UserBudget
from tests.conftest import csv_file
from tests.helpers import costs as cost_helpers

prices = cost_helpers.prices

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("prices")]


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


def form(**overrides):
    data = {"prompt": "Say: {{text}}", "model": "gemini-2.5-flash", "concurrency": "4",
            "max_retries": "2", "priority": "1", "thinking": "off", "budget": "",
            "file": csv_file("text\nhello world\ngood day\n")}
    data.update(overrides)
    return data


def test_the_new_batch_page_offers_thinking_next_to_the_model_and_a_budget(alice):
    page = alice.get(reverse("batch_new")).content.decode()
    assert 'name="thinking"' in page and 'name="budget"' in page
    assert page.index('name="model"') < page.index('name="thinking"')
    assert 'value="off" selected' in page
    assert 'id="estimate-button"' in page


def test_the_estimate_fragment_shows_tokens_cost_and_time_and_creates_nothing(alice, settings):
    settings.GEMINI_API_KEY = ""
    answer = alice.post(reverse("batch_new_estimate"), form(max_output_tokens="20"),
                        HTTP_HX_REQUEST="true")
    text = answer.content.decode()
    assert answer.status_code == 200
    assert "Estimate for 2 rows on gemini-2.5-flash" in text
    assert "in batch mode" in text and "countTokens was not available" in text
    assert Batch.objects.count() == 0


def test_the_estimate_reads_the_file_the_preview_staged(alice, settings):
    settings.GEMINI_API_KEY = ""
    previewed = alice.post(reverse("batch_new_preview"),
                           {"prompt": "Say: {{text}}",
                            "file": csv_file("text\nhello world\ngood day\nhi there\n")},
                           HTTP_HX_REQUEST="true").content.decode()
    token = re.search(r'name="staged_upload" value="([^"]+)"', previewed).group(1)
    data = form(staged_upload=token)
    del data["file"]  # after a refused Create the page has only the staged copy

    answer = alice.post(reverse("batch_new_estimate"), data, HTTP_HX_REQUEST="true")

    text = answer.content.decode()
    assert "Estimate for 3 rows on gemini-2.5-flash" in text
    assert 'name="staged_upload"' not in text  # nothing new was staged
    assert StagedUpload.objects.filter(token=token).exists()  # still there for Create
    created = alice.post(reverse("batch_new"), data)
    assert created.status_code == 302 and Batch.objects.get().total_rows == 3


def test_an_estimate_sent_with_the_file_stages_it_for_the_page(alice, settings):
    settings.GEMINI_API_KEY = ""
    answer = alice.post(reverse("batch_new_estimate"), form(), HTTP_HX_REQUEST="true")
    text = answer.content.decode()
    staged = StagedUpload.objects.get()
    assert f'name="staged_upload" value="{staged.token}"' in text and 'hx-swap-oob="true"' in text
    assert "Estimate for 2 rows" in text


def test_the_estimate_asks_for_a_file_and_prompt_first(alice):
    answer = alice.post(reverse("batch_new_estimate"), {"prompt": ""}, HTTP_HX_REQUEST="true")
    assert "Choose a file and write a prompt first." in answer.content.decode()


def test_creating_with_a_budget_and_thinking_stores_them(alice):
    answer = alice.post(reverse("batch_new"), form(budget="2.50", thinking="low"))
    assert answer.status_code == 302
    batch = Batch.objects.get()
    assert batch.budget == Decimal("2.5") and batch.thinking == "low"
    assert batch.prompt_chars == len("Say: hello world") + len("Say: good day")


def test_the_batch_page_shows_spend_budget_and_the_owners_month(alice, make_batch, user):
    UserBudget.objects.create(user=user, monthly_limit=Decimal("20"))
    batch = make_batch(budget="5")
    Batch.objects.filter(pk=batch.pk).update(cost_spent=Decimal("1.234"), costed_rows=1)
    page = alice.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert '<dd id="spent">$1.23</dd>' in page
    assert '<dd id="budget">$5.00</dd>' in page
    assert "$0.00 of $20.00 this month" in page
    assert 'id="spend-rest"' in page


def test_a_model_without_a_price_shows_price_unknown_not_zero(alice, make_batch, settings):
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-9-unpriced"]
    batch = make_batch(model="gemini-9-unpriced")
    Batch.objects.filter(pk=batch.pk).update(unpriced_rows=2)
    page = alice.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert '<dd id="spent">price unknown</dd>' in page
    dashboard = alice.get(reverse("dashboard")).content.decode()
    assert "price unknown" in dashboard


def test_the_budget_form_raises_the_budget_of_a_paused_batch_and_it_goes_on(alice, make_batch):
    batch = make_batch(budget="0.01")
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.PAUSED, paused=True, cost_spent=Decimal("0.01"),
        last_error="Budget reached: $0.01 of $0.01 spent; raise the budget to continue.")
    answer = alice.post(reverse("batch_budget", args=[batch.pk]), {"budget": "1.00"})
    assert answer.status_code == 302
    batch.refresh_from_db()
    assert batch.budget == Decimal("1") and not batch.paused and batch.last_error == ""


def test_a_bad_budget_is_a_message_and_changes_nothing(alice, make_batch):
    batch = make_batch(budget="3")
    alice.post(reverse("batch_budget", args=[batch.pk]), {"budget": "abc"})
    page = alice.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "not an amount of money" in page
    batch.refresh_from_db()
    assert batch.budget == Decimal("3")


def test_another_users_budget_form_is_404(alice, make_batch, other_user):
    batch = make_batch(owner=other_user)
    answer = alice.post(reverse("batch_budget", args=[batch.pk]), {"budget": "9"})
    assert answer.status_code == 404


def test_the_dashboard_shows_each_batchs_spend_and_the_month_against_the_limit(alice,
                                                                              make_batch, user):
    from batches.costs import month_start
    from batches.models import MonthlySpend

    UserBudget.objects.create(user=user, monthly_limit=Decimal("50"))
    MonthlySpend.objects.create(user=user, month=month_start(), spent=Decimal("12.5"))
    batch = make_batch(budget="10")
    Batch.objects.filter(pk=batch.pk).update(cost_spent=Decimal("2.5"), costed_rows=3)
    page = alice.get(reverse("dashboard")).content.decode()
    assert "$12.50 of $50.00 this month" in page
    assert "$2.50 of $10.00" in page
