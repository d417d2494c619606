"""Drafts and the result cache together with structured output and notifications: a cached row
of a columns batch carries its validated data, a draft's output can change, and a draft never
records a notification event."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from batches import iterations, services
from batches.fake_gemini.structured import structured_answer
from batches.models import Batch, CachedAnswer, Event
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done
from tests.iterations.test_drafts_and_samples import rows, run_sample

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = [
    {"name": "sentiment", "type": "enum", "values": ["positive", "mixed", "negative"]},
    {"name": "score", "type": "integer"},
]


@pytest.fixture
def no_deliveries(monkeypatch, settings):
    """Events are recorded; their deliveries are not sent anywhere."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    calls: list[int] = []
    monkeypatch.setattr("batches.notifications.models.enqueue", calls.extend)
    return calls


def test_cached_rows_of_a_columns_batch_carry_the_validated_data(fake, make_batch, enqueued):
    batch = make_batch(rows(6), output_fields=FIELDS, start=False)
    iterations.batch_sample(batch=batch, size=3)
    run_sample(batch)

    iterations.batch_start(batch=batch)
    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED and fake.stats.total == 6
    results = list(batch.results.order_by("index"))
    assert [r.cached for r in results] == [True, True, True, False, False, False]
    for row in results:
        assert row.data == structured_answer(batch.response_schema, row.prompt)
    assert {r.attempts for r in results if r.cached} == {0}


def test_a_repaired_answer_is_reused_as_valid_data_without_a_call(fake, make_batch, enqueued):
    fake.configure(json_invalid_once=["#bad-once"])
    texts = [{"text": "fine"}, {"text": "#bad-once here"}]
    first = make_batch(texts, output_fields=FIELDS)
    run_until_done(first)
    assert first.results.get(index=1).attempts == 2
    calls = fake.stats.total

    second = make_batch(texts, output_fields=FIELDS)
    run_until_done(second)

    assert fake.stats.total == calls
    assert second.status == Batch.Status.COMPLETED
    for row in second.results.all():
        assert row.cached and row.data == structured_answer(second.response_schema, row.prompt)


def test_a_cached_text_that_does_not_match_the_schema_asks_the_model_again(fake, make_batch,
                                                                          enqueued):
    first = make_batch(rows(2), output_fields=FIELDS)
    run_until_done(first)
    CachedAnswer.objects.update(output="not JSON at all")

    second = make_batch(rows(2), output_fields=FIELDS)
    run_until_done(second)

    assert fake.stats.total == 4 and not second.results.filter(cached=True).exists()
    for row in second.results.all():
        assert row.data == structured_answer(second.response_schema, row.prompt)
    assert not CachedAnswer.objects.filter(output="not JSON at all").exists()


def test_a_text_and_a_columns_batch_with_the_same_prompt_never_share_answers(fake, make_batch,
                                                                            enqueued):
    text = make_batch(rows(2))
    run_until_done(text)
    columns = make_batch(rows(2), output_fields=FIELDS)
    run_until_done(columns)
    assert fake.stats.total == 4 and not columns.results.filter(cached=True).exists()


def test_a_drafts_output_can_change_after_a_sample_and_drops_its_answers(fake, make_batch,
                                                                        enqueued):
    batch = make_batch(rows(4), start=False)
    iterations.batch_sample(batch=batch, size=2)
    run_sample(batch)

    iterations.batch_edit_draft(batch=batch, output_fields=FIELDS)

    assert [f.name for f in batch.output_fields] == ["sentiment", "score"]
    assert set(batch.results.values_list("status", flat=True)) == {"pending"}
    iterations.batch_sample(batch=batch, size=2)
    run_sample(batch)
    row = batch.results.get(index=0)
    assert row.data == structured_answer(batch.response_schema, row.prompt)

    iterations.batch_edit_draft(batch=batch, output_fields=None, response_schema=None)
    assert batch.response_schema is None
    assert batch.results.get(index=0).data is None


def test_a_draft_output_field_named_like_an_input_column_is_refused_and_changes_nothing(
        make_batch, enqueued):
    batch = make_batch(rows(2), start=False)
    with pytest.raises(services.InvalidInput) as err:
        iterations.batch_edit_draft(batch=batch, prompt="New: {{text}}",
                                    output_fields=[{"name": "text", "type": "text"}])
    assert err.value.field == "output_fields" and "input column" in str(err.value)
    batch.refresh_from_db()
    assert batch.response_schema is None and batch.prompt_template == "Say: {{text}}"


def test_the_api_changes_a_drafts_output_after_a_sample_but_not_a_started_batchs(
        fake, make_batch, user, enqueued):
    client = APIClient()
    client.force_authenticate(user)
    draft = make_batch(rows(2), start=False)
    iterations.batch_sample(batch=draft, size=2)
    run_sample(draft)

    answer = client.patch(f"/api/batches/{draft.pk}/", {"output_fields": FIELDS}, format="json")
    assert answer.status_code == 200, answer.content
    assert [f["name"] for f in answer.json()["output_fields"]] == ["sentiment", "score"]

    started = make_batch(rows(2))
    run_until_done(started)
    answer = client.patch(f"/api/batches/{started.pk}/", {"output_fields": FIELDS},
                          format="json")
    assert answer.status_code == 409


def test_a_draft_records_no_event_until_it_is_started_and_ends(fake, make_batch, enqueued,
                                                               no_deliveries):
    fake.configure(fail_permanently=["row 1"])
    batch = make_batch(rows(3), start=False, webhook_url="http://127.0.0.1:9/hook")
    iterations.batch_sample(batch=batch, size=3)
    run_sample(batch)

    assert batch.status == Batch.Status.DRAFT
    assert set(batch.results.values_list("status", flat=True)) == {"succeeded", "failed"}
    assert batch.finalise_if_done() is False
    assert Event.objects.count() == 0

    iterations.batch_start(batch=batch)
    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    assert list(Event.objects.values_list("type", flat=True)) == ["batch.completed_with_errors"]


def test_a_drafts_prompt_cannot_start_attaching_files_it_did_not_match(make_batch, enqueued):
    batch = make_batch([{"text": "a", "doc": "a.pdf"}], start=False)
    with pytest.raises(services.InvalidInput) as err:
        iterations.batch_edit_draft(batch=batch, prompt="Read {{file:doc}}")
    assert "{{file:...}}" in str(err.value)
    batch.refresh_from_db()
    assert batch.prompt_template == "Say: {{text}}"
