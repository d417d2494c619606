"""Structured output through real `qcluster` workers: repairs and schema failures end to end."""

import pytest

from batches.fake_gemini import FakeGemini
from batches.fake_gemini.structured import structured_answer
from batches.models import Batch
from tests.helpers import workers
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_500_rows_through_real_workers_repair_invalid_json_once_and_fail_what_stays_invalid(
        qclusters, make_batch):
    texts = []
    for i in range(500):
        marker = " #bad-once" if i % 10 == 0 else " #bad-always" if i % 100 == 5 else ""
        texts.append(f"review {i}{marker}")
    with FakeGemini(latency_ms=10, jitter_ms=5, json_invalid_once=["#bad-once"],
                    json_invalid_always=["#bad-always"]) as server:
        qclusters.start(server.url)
        batch = make_batch(rows=[{"text": t} for t in texts], concurrency=32, output_fields=[
            {"name": "sentiment", "type": "enum", "values": ["positive", "mixed", "negative"]},
            {"name": "score", "type": "integer"},
            {"name": "reasons", "type": "list"},
        ])

        batch = wait_for_batch(batch.pk, timeout=120, clusters=qclusters)

    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS, qclusters.logs()
    rows = list(batch.results.order_by("index"))
    repaired = [r for r in rows if "#bad-once" in r.prompt]
    broken = [r for r in rows if "#bad-always" in r.prompt]
    plain = [r for r in rows if "#bad" not in r.prompt]
    assert (len(repaired), len(broken), len(plain)) == (50, 5, 445)
    assert {(r.status, r.attempts) for r in repaired} == {("succeeded", 2)}
    assert {(r.status, r.attempts) for r in plain} == {("succeeded", 1)}
    assert {(r.status, r.attempts) for r in broken} == {("failed", 2)}
    assert all(r.error.startswith("output did not match the schema: $: the answer is not "
                                  "valid JSON") for r in broken)
    for row in repaired + plain:
        assert row.data == structured_answer(batch.response_schema, row.prompt), row.index
