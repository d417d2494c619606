"""A batch on an OpenAI-compatible model through real `qcluster` workers and the real `openai`
SDK, against the fake OpenAI server: structured columns, and 429s retried no sooner than their
Retry-After (read from the server's own request log)."""

from __future__ import annotations

import pytest

from batches.fake_gemini.structured import structured_answer
from batches.fake_openai import FakeOpenAI
from batches.models import Batch
from tests.helpers import workers
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

MODEL = "gpt-test-mini"
KEY = "sk-test-process-0123"
RETRY_AFTER_S = 2


def test_a_columns_batch_on_an_openai_model_runs_on_real_workers_and_honours_retry_after(
        qclusters, make_batch, settings):
    settings.OPENAI_MODELS = [MODEL]
    texts = [f"review {i}" + (" #busy" if i % 10 == 3 else "") for i in range(40)]
    with FakeOpenAI(models=(MODEL,), require_key=KEY, latency_ms=5,
                    rate_limit_times={"#busy": 1}, retry_after_s=RETRY_AFTER_S) as server:
        qclusters.start(server.url, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=KEY,
                        OPENAI_MODELS=MODEL, GEMINI_API_KEY="")
        batch = make_batch(rows=[{"text": t} for t in texts], model=MODEL, concurrency=8,
                           output_fields=[
                               {"name": "sentiment", "type": "enum",
                                "values": ["positive", "mixed", "negative"]},
                               {"name": "score", "type": "integer", "minimum": 1, "maximum": 5},
                           ])
        batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters)
        log = server.snapshot(log=True)["log"]

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    rows = list(batch.results.order_by("index"))
    for row in rows:
        assert row.data == structured_answer(batch.response_schema, row.prompt), row.index
        assert row.attempts == (2 if "#busy" in row.prompt else 1), row.index
    busy = [row.prompt for row in rows if "#busy" in row.prompt]
    assert len(busy) == 4
    # One request per row and one more per 429: neither the SDK nor anything else retried.
    assert len(log) == len(rows) + len(busy)
    for prompt in busy:
        sent = [entry for entry in log if entry["prompt"] == prompt]
        assert [entry["status"] for entry in sent] == [429, 200]
        assert sent[1]["time"] - sent[0]["time"] >= RETRY_AFTER_S, prompt
    assert {entry["body"]["model"] for entry in log} == {MODEL}
    assert batch.prompt_tokens > 0 and batch.output_tokens > 0
