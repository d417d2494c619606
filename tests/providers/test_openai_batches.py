"""Batches on an OpenAI-compatible model, in this process: the engine, costs, the result cache,
and the API and new-batch page refusing what the provider cannot do."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from batches import limits
from batches.fake_gemini.structured import structured_answer
from batches.fake_openai import FakeOpenAI
from batches.models import Batch, BatchResult, ModelPrice
from batches.providers import openai_compat
from tests.helpers import engine as engine_helpers
from tests.helpers.api import client_for
from tests.helpers.engine import run_until_done

# The slice's database thread has its own connection: it sees only committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gpt-test"
KEY = "sk-test-0123456789"
enqueued = engine_helpers.enqueued


@pytest.fixture
def openai_fake(settings):
    """The fake OpenAI server the engine reaches through the real SDK; Gemini is unset, so a
    request that went there would fail."""
    with FakeOpenAI(models=(MODEL, "llama-local"), require_key=KEY) as server:
        settings.OPENAI_BASE_URL = server.base_url
        settings.OPENAI_API_KEY = KEY
        settings.OPENAI_MODELS = [MODEL, "llama-local"]
        settings.GEMINI_API_KEY = ""
        settings.BATCH_RETRY_BASE_S = 0.01
        settings.BATCH_RETRY_MAX_S = 0.05
        settings.BATCH_SLICES_PER_BATCH = 1
        limits.set_limiter(None)
        openai_compat.reset_provider()
        yield server
    openai_compat.reset_provider()
    limits.set_limiter(None)


def rows(n: int) -> list[dict]:
    return [{"text": f"review {i}"} for i in range(n)]


def test_a_text_batch_runs_on_the_openai_model_with_tokens_and_costs(openai_fake, make_batch,
                                                                     enqueued):
    ModelPrice.objects.create(model=MODEL, valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                              input_per_million=Decimal("1"), output_per_million=Decimal("2"))
    batch = make_batch(rows=rows(5), model=MODEL, system_instruction="Be brief.")
    batch = run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED
    results = list(batch.results.order_by("index"))
    assert [r.output for r in results] == [f"ECHO: Say: review {i}" for i in range(5)]
    # "Be brief." (2 words) + "Say: review N" (3); "ECHO: Say: review N" (4).
    assert (batch.prompt_tokens, batch.output_tokens) == (25, 20)
    assert batch.cost_spent == Decimal("0.000065")  # 25 x $1/M + 20 x $2/M
    assert (batch.costed_rows, batch.unpriced_rows) == (5, 0)
    log = openai_fake.snapshot(log=True)["log"]
    assert len(log) == 5 and {e["body"]["model"] for e in log} == {MODEL}
    assert log[0]["body"]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_an_unpriced_openai_model_counts_its_rows_as_unpriced(openai_fake, make_batch, enqueued):
    batch = run_until_done(make_batch(rows=rows(2), model="llama-local"))
    assert batch.status == Batch.Status.COMPLETED
    assert (batch.costed_rows, batch.unpriced_rows, batch.cost_spent) == (0, 2, 0)


def test_a_columns_batch_fills_its_columns_from_the_json_schema(openai_fake, make_batch,
                                                                enqueued):
    batch = make_batch(rows=rows(4), model=MODEL, output_fields=[
        {"name": "sentiment", "type": "enum", "values": ["positive", "negative"]},
        {"name": "score", "type": "integer", "minimum": 1, "maximum": 5},
    ])
    batch = run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED
    for row in batch.results.all():
        assert row.data == structured_answer(batch.response_schema, row.prompt)
    sent = openai_fake.snapshot(log=True)["log"][0]["body"]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True


def test_retries_and_permanent_errors_work_as_on_gemini(openai_fake, make_batch, enqueued):
    openai_fake.configure(rate_limit_times={"review 1": 1}, retry_after_s=0,
                          fail_times={"review 2": 2}, fail_permanently=["review 3"])
    batch = run_until_done(make_batch(rows=rows(4), model=MODEL, max_retries=3))
    results = {r.index: r for r in batch.results.all()}
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    assert (results[1].status, results[1].attempts) == ("succeeded", 2)
    assert (results[2].status, results[2].attempts) == ("succeeded", 3)
    assert results[3].status == "failed" and "400" in results[3].error
    assert openai_fake.snapshot()["total_requests"] == 1 + 2 + 3 + 1


def test_a_refused_key_fails_the_batch_once(openai_fake, make_batch, enqueued, settings):
    settings.OPENAI_API_KEY = "sk-not-the-right-key"
    batch = run_until_done(make_batch(rows=rows(3), model=MODEL))
    assert batch.status == Batch.Status.FAILED
    assert "401" in batch.last_error and "sk-not-the-right-key" not in batch.last_error


def test_an_identical_batch_is_answered_from_the_result_cache(openai_fake, make_batch,
                                                              enqueued):
    run_until_done(make_batch(rows=rows(3), model=MODEL))
    second = run_until_done(make_batch(rows=rows(3), model=MODEL))
    assert second.status == Batch.Status.COMPLETED and second.cached_count == 3
    assert openai_fake.snapshot()["total_requests"] == 3


def test_conversation_turns_reach_the_model_as_chat_history(openai_fake, make_batch, enqueued):
    batch = make_batch(rows=[{"chat": "a", "text": "hi"}, {"chat": "a", "text": "again"}],
                       model=MODEL, conversation_column="chat")
    batch = run_until_done(batch)
    second = batch.results.get(index=1)
    assert second.output == "[turn 2] ECHO: Say: again"
    assert openai_fake.snapshot(log=True)["log"][-1]["body"]["messages"] == [
        {"role": "user", "content": "Say: hi"},
        {"role": "assistant", "content": "ECHO: Say: hi"},
        {"role": "user", "content": "Say: again"}]


# Creation: what the provider cannot do is a 400 naming the field ------------------------------

@pytest.fixture
def api(user):
    return client_for(user)


def test_the_api_creates_a_batch_on_a_configured_openai_model(openai_fake, api, enqueued):
    response = api.post("/api/batches/", {"rows": [{"text": "a"}], "prompt": "{{text}}",
                                          "model": MODEL}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["model"] == MODEL


def test_the_api_refuses_an_openai_model_that_is_not_configured(openai_fake, api):
    response = api.post("/api/batches/", {"rows": [{"text": "a"}], "prompt": "{{text}}",
                                          "model": "gpt-5-unlisted"}, format="json")
    assert response.status_code == 400
    assert "gpt-5-unlisted" in response.json()["model"][0]
    assert MODEL in response.json()["model"][0]
    assert Batch.objects.count() == 0


def test_the_api_refuses_thinking_on_an_openai_model_naming_the_field(openai_fake, api):
    response = api.post("/api/batches/", {"rows": [{"text": "a"}], "prompt": "{{text}}",
                                          "model": MODEL, "thinking": "low"}, format="json")
    assert response.status_code == 400
    assert "thinking" in response.json()
    assert Batch.objects.count() == 0 and BatchResult.objects.count() == 0


def test_the_api_refuses_documents_on_an_openai_model(openai_fake, api):
    sheet = io.BytesIO(b"text,scan\na,x.png\n")
    sheet.name = "rows.csv"
    png = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    png.name = "x.png"
    response = api.post("/api/batches/", {"file": sheet, "documents": [png], "model": MODEL,
                                          "prompt": "{{text}} {{file:scan}}"},
                        format="multipart")
    assert response.status_code == 400
    assert "documents" in response.json() and MODEL in str(response.json()["documents"])
    assert Batch.objects.count() == 0


def test_the_new_batch_page_groups_models_by_provider(openai_fake, client, user):
    client.force_login(user)
    content = client.get(reverse("batch_new")).content.decode()
    gemini = content.index('<optgroup label="Gemini">')
    openai = content.index('<optgroup label="OpenAI-compatible">')
    assert gemini < content.index('value="gemini-2.5-flash"') < openai
    assert openai < content.index(f'value="{MODEL}"')


def test_the_new_batch_page_shows_the_thinking_error_and_creates_nothing(openai_fake, client,
                                                                        user):
    client.force_login(user)
    sheet = io.BytesIO(b"text\nhello\n")
    sheet.name = "rows.csv"
    response = client.post(reverse("batch_new"), {
        "file": sheet, "prompt": "Say: {{text}}", "model": MODEL, "thinking": "low",
        "concurrency": "4", "max_retries": "2", "priority": "1"})
    assert response.status_code == 200
    content = response.content.decode()
    field = content.split('id="field-thinking"', 1)[1].split("</div>", 1)[0]
    assert "not available on gpt-test" in field
    assert Batch.objects.count() == 0


def test_the_new_batch_page_refuses_an_unlisted_model(openai_fake, client, user):
    client.force_login(user)
    sheet = io.BytesIO(b"text\nhello\n")
    sheet.name = "rows.csv"
    response = client.post(reverse("batch_new"), {
        "file": sheet, "prompt": "Say: {{text}}", "model": "gpt-5-unlisted",
        "concurrency": "4", "max_retries": "2", "priority": "1"})
    assert response.status_code == 200
    field = response.content.decode().split('id="field-model"', 1)[1].split("</div>", 1)[0]
    assert "gpt-5-unlisted" in field
    assert Batch.objects.count() == 0


def test_the_estimate_counts_characters_for_an_openai_model_and_asks_no_server(openai_fake):
    from batches import costs

    estimate = costs.estimate(model=MODEL, prompts=["Say: a b c"] * 3)
    assert estimate.method == "chars_per_token"
    assert any("no token counting" in note for note in estimate.notes)
    assert openai_fake.snapshot()["total_requests"] == 0


def test_openai_batches_take_openai_rate_limits_by_default(openai_fake, make_batch, enqueued,
                                                          settings):
    settings.GEMINI_RPM, settings.OPENAI_RPM, settings.OPENAI_TPM = 10, 500, 90000
    on_openai = make_batch(model=MODEL)
    on_gemini = make_batch(model="gemini-2.5-flash")
    assert (on_openai.rpm_limit, on_openai.tpm_limit) == (500, 90000)
    assert on_gemini.rpm_limit == 10
