"""Grounding through a real `qcluster` worker and the real google-genai SDK: sources per row."""

import pytest

from batches.fake_gemini import FakeGemini
from batches.models import Batch
from tests.helpers import workers
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_a_worker_grounds_20_rows_and_stores_each_rows_sources(qclusters, make_batch):
    with FakeGemini(latency_ms=5) as server:
        qclusters.start(server.url)
        batch = make_batch(rows=[{"company": f"Company {i}"} for i in range(20)],
                           prompt="Where is {{company}} based?", concurrency=8,
                           google_search=True, url_context=True, language="es")
        batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters)
        bodies = [entry.body for entry in server.stats.log]

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert len(bodies) == 20
    assert all(b["tools"] == [{"googleSearch": {}}, {"urlContext": {}}] for b in bodies)
    assert all(b["systemInstruction"]["parts"][0]["text"].endswith(
        "Write your answer in Spanish.") for b in bodies)
    for row in batch.results.order_by("index"):
        slug = f"where-is-company-{row.index}-based%3F"
        assert row.sources == [
            {"uri": f"https://example.com/search/{slug}", "title": "example.com"},
            {"uri": f"https://example.org/wiki/{slug}", "title": "example.org"}], row.index
