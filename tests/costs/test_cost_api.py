"""Cost through the REST API: the estimate, the budget by PATCH, spend in the detail."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from batches.models import Batch
from tests.conftest import csv_file
from tests.helpers import costs as cost_helpers
from tests.helpers import documents as document_helpers

prices = cost_helpers.prices

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("prices")]


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    cache.clear()
    return client


@pytest.fixture
def counting(fake_gemini, settings):
    settings.GEMINI_BASE_URL = fake_gemini.url
    settings.GEMINI_API_KEY = "test-key"
    from batches.providers import gemini

    gemini.reset_provider()
    yield fake_gemini
    gemini.reset_provider()


def test_the_estimate_counts_a_sample_with_count_tokens_and_creates_nothing(api, counting):
    rows = [{"text": f"word {i} " * (1 + i % 5)} for i in range(100)]
    answer = api.post("/api/batches/estimate/", {"prompt": "Say: {{text}}", "rows": rows,
                                                  "max_output_tokens": 10}, format="json")

    assert answer.status_code == 200, answer.data
    data = answer.data
    assert data["method"] == "count_tokens" and data["sampled_rows"] == 20
    assert counting.app.count_tokens_calls == 20
    words = sum(1 + len(r["text"].split()) for r in rows)  # the fake's tokenizer
    assert abs(data["input_tokens"] - words) <= 0.10 * words
    assert data["output_tokens_high"] == 1000
    assert Decimal(data["batch_mode_cost_high"]) * 2 == Decimal(data["cost_high"])
    assert data["summary"][0].startswith("Estimate for 100 rows on gemini-2.5-flash")
    assert Batch.objects.count() == 0

    api.post("/api/batches/estimate/", {"prompt": "Say: {{text}}", "rows": rows},
             format="json")
    assert counting.app.count_tokens_calls == 20  # cached per prompt


def test_without_count_tokens_the_estimate_falls_back_and_says_so(api, settings):
    settings.GEMINI_API_KEY = ""
    answer = api.post("/api/batches/estimate/", {"prompt": "Say: {{text}}",
                                                  "rows": [{"text": "abcd" * 10}]},
                      format="json")

    assert answer.status_code == 200
    assert answer.data["method"] == "chars_per_token"
    assert answer.data["input_tokens"] == round(len("Say: " + "abcd" * 10) / 4)
    assert "countTokens was not available" in answer.data["notes"][0]


def test_the_estimate_checks_its_input_like_create(api):
    answer = api.post("/api/batches/estimate/", {"prompt": "{{missing}}",
                                                  "rows": [{"text": "a"}]}, format="json")
    assert answer.status_code == 400 and "prompt" in answer.data


def test_an_estimate_from_a_file_upload(api, counting):
    answer = api.post("/api/batches/estimate/", {
        "prompt": "Say: {{text}}", "file": csv_file("text\nhello world\ngood day\n")},
        format="multipart")
    assert answer.status_code == 200 and answer.data["rows"] == 2
    assert answer.data["input_tokens"] == 6  # "Say: hello world", "Say: good day"


def test_create_takes_a_budget_and_thinking_and_the_detail_shows_spend(api):
    answer = api.post("/api/batches/", {"prompt": "Say: {{text}}", "rows": [{"text": "a"}],
                                        "budget": "5.00", "thinking": "low"}, format="json")
    assert answer.status_code == 201, answer.data
    assert answer.data["budget"] == "5.000000" and answer.data["thinking"] == "low"
    assert answer.data["spend"]["spent"] == "0.000000"
    assert answer.data["spend"]["price_known"] is True
    assert answer.data["spend"]["estimate_rest"] is not None


def test_a_bad_thinking_value_is_refused_by_name(api):
    answer = api.post("/api/batches/", {"prompt": "Say: {{text}}", "rows": [{"text": "a"}],
                                        "thinking": "lots"}, format="json")
    assert answer.status_code == 400 and "thinking" in answer.data


def test_patch_raises_the_budget_and_a_budget_paused_batch_goes_on(api, user, make_batch,
                                                                    monkeypatch):
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)
    batch = make_batch(budget="0.01")
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.PAUSED, paused=True, cost_spent=Decimal("0.01"),
        last_error="Budget reached: $0.01 of $0.01 spent; raise the budget to continue.")

    answer = api.patch(f"/api/batches/{batch.pk}/", {"budget": "0.50"}, format="json")

    assert answer.status_code == 200, answer.data
    assert answer.data["budget"] == "0.500000"
    assert answer.data["status"] == "running" or answer.data["status"] == "pending"
    assert answer.data["paused"] is False and answer.data["last_error"] == ""


def test_another_users_batch_budget_is_404(api, other_user, make_batch):
    batch = make_batch(owner=other_user)
    answer = api.patch(f"/api/batches/{batch.pk}/", {"budget": "9"}, format="json")
    assert answer.status_code == 404
    assert Batch.objects.get(pk=batch.pk).budget is None


def test_exports_carry_each_rows_cost_as_exact_digits(api, make_batch):
    import json

    batch = make_batch()
    batch.results.filter(index=0).update(status="succeeded", output="x",
                                         cost=Decimal("0.000010900"))
    csv_text = b"".join(api.get(f"/api/batches/{batch.pk}/export/?format=csv")
                        .streaming_content).decode("utf-8-sig")
    header, first = csv_text.splitlines()[:2]
    assert header.split(",")[-1] == "cost" and first.endswith(",0.000010900")
    jsonl = b"".join(api.get(f"/api/batches/{batch.pk}/export/?format=jsonl")
                     .streaming_content).decode()
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert rows[0]["cost"] == "0.000010900" and rows[1]["cost"] is None


def test_a_budget_may_be_a_number_a_string_or_null_and_a_form_may_leave_it_empty(api):
    as_number = api.post("/api/batches/", {"prompt": "Say: {{text}}", "rows": [{"text": "a"}],
                                           "budget": 2.5}, format="json")
    assert as_number.status_code == 201 and as_number.data["budget"] == "2.500000"
    bad = api.post("/api/batches/", {"prompt": "Say: {{text}}", "rows": [{"text": "a"}],
                                     "budget": "two"}, format="json")
    assert bad.status_code == 400 and "budget" in bad.data
    form = api.post("/api/batches/", {"prompt": "Say: {{text}}", "budget": "",
                                      "file": csv_file("text\nx\n")}, format="multipart")
    assert form.status_code == 201 and form.data["budget"] is None
    removed = api.patch(f"/api/batches/{as_number.data['id']}/", {"budget": None},
                        format="json")
    assert removed.status_code == 200 and removed.data["budget"] is None


media = document_helpers.media


def test_an_estimate_of_documents_counts_a_row_per_file_and_keeps_none_of_them(api, settings,
                                                                               media):
    from tests.helpers.documents import pdf_bytes, png_bytes, stored_files, uploaded_file

    settings.GEMINI_API_KEY = ""
    answer = api.post("/api/batches/estimate/", {
        "prompt": "Total in {{filename}}",
        "documents": [uploaded_file("a.pdf", pdf_bytes()), uploaded_file("b.png", png_bytes())]},
        format="multipart")

    assert answer.status_code == 200, answer.data
    assert answer.data["rows"] == 2
    assert any("documents are not counted" in note for note in answer.data["notes"])
    assert stored_files(media) == [] and not Batch.objects.exists()
