"""Columns batches in the engine: answers validated, repaired once, or failed with the path."""

import pytest

from batches import outputs
from batches.fake_gemini.structured import structured_answer
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = [
    {"name": "sentiment", "type": "enum", "values": ["positive", "mixed", "negative"]},
    {"name": "score", "type": "integer", "description": "1 to 5"},
    {"name": "reasons", "type": "list"},
]


def columns_batch(make_batch, texts, **kwargs):
    return make_batch(rows=[{"text": t} for t in texts], output_fields=FIELDS, **kwargs)


def test_each_rows_answer_is_stored_as_data_that_matches_its_own_prompt(fake, make_batch,
                                                                        enqueued):
    batch = columns_batch(make_batch, [f"review {i}" for i in range(12)])

    run_until_done(batch)

    rows = list(batch.results.order_by("index"))
    assert {r.status for r in rows} == {"succeeded"}
    for row in rows:
        assert row.data == structured_answer(batch.response_schema, row.prompt)
        assert outputs.check_answer(row.output, batch.response_schema) == row.data
        assert row.attempts == 1
    sent = fake.stats.log[-1].body["generationConfig"]
    assert sent["responseJsonSchema"] == batch.response_schema


def test_an_invalid_answer_is_repaired_once_and_the_repair_counts_as_an_attempt(
        fake, make_batch, enqueued):
    fake.configure(json_invalid_once=["#bad-once"])
    batch = columns_batch(make_batch, ["fine", "#bad-once here"])

    run_until_done(batch)

    repaired = batch.results.get(index=1)
    assert (repaired.status, repaired.attempts) == ("succeeded", 2)
    assert repaired.data == structured_answer(batch.response_schema, repaired.prompt)
    repair = [e for e in fake.stats.log if e.contents_length == 3]
    assert len(repair) == 1
    note = repair[0].body["contents"][2]["parts"][0]["text"]
    assert "did not match the required JSON schema ($: the answer is not valid JSON" in note
    batch.refresh_from_db()
    assert batch.status == "completed"
    assert repaired.prompt_tokens > 0


def test_an_answer_that_stays_invalid_fails_the_row_with_the_schema_message(fake, make_batch,
                                                                            enqueued):
    fake.configure(json_invalid_always=["#bad-always"], json_mismatch=["#wrong-type"])
    batch = columns_batch(make_batch, ["fine", "#bad-always", "#wrong-type"])

    run_until_done(batch)

    rows = {r.index: r for r in batch.results.all()}
    assert rows[0].status == "succeeded"
    assert (rows[1].status, rows[1].attempts, rows[1].data) == ("failed", 2, None)
    assert rows[1].error.startswith(
        "output did not match the schema: $: the answer is not valid JSON")
    assert rows[1].output  # the raw answer is kept to look at
    assert rows[2].error == ("output did not match the schema: $.sentiment: 12345 is not one "
                             "of ['positive', 'mixed', 'negative']")
    batch.refresh_from_db()
    assert batch.status == "completed_with_errors"


def test_without_a_retry_left_a_mismatch_fails_at_once(fake, make_batch, enqueued):
    fake.configure(json_invalid_once=["#bad-once"])
    batch = columns_batch(make_batch, ["#bad-once"], max_retries=0)

    run_until_done(batch)

    row = batch.results.get()
    assert (row.status, row.attempts) == ("failed", 1)
    assert fake.stats.total == 1


def test_a_text_batch_keeps_no_data(fake, make_batch, enqueued):
    batch = make_batch()
    run_until_done(batch)
    assert list(batch.results.values_list("data", flat=True)) == [None, None, None]
