"""New versions in real `qcluster` processes: only changed requests reach the model."""

from __future__ import annotations

import csv
import io

import pytest

from batches import iterations, services
from batches.fake_gemini import FakeGemini
from batches.models import Batch
from tests.helpers import workers
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def csv_upload(values: list[str]) -> io.BytesIO:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "text"])
    for i, value in enumerate(values):
        writer.writerow([i, value])
    f = io.BytesIO(text.getvalue().encode())
    f.name = "reviews.csv"
    return f


def test_a_corrected_file_calls_the_model_only_for_its_changed_rows(qclusters, user):
    with FakeGemini() as fake:
        qclusters.start(fake.url)
        values = [f"review {i}" for i in range(1000)]
        first = services.batch_create(owner=user, prompt="Sentiment of: {{text}}",
                                      file=csv_upload(values), filename="reviews.csv",
                                      concurrency=64)
        first = wait_for_batch(first.pk, timeout=120, clusters=qclusters)
        assert first.status == Batch.Status.COMPLETED, qclusters.logs()
        assert fake.stats.total == 1000

        changed = set(range(0, 1000, 10))  # 100 rows corrected
        corrected = [f"review {i} (fixed)" if i in changed else v for i, v in enumerate(values)]
        second = iterations.batch_new_version(batch=first, owner=user,
                                              file=csv_upload(corrected), filename="reviews.csv")
        assert second.status == Batch.Status.DRAFT and second.parent_id == first.pk
        iterations.batch_start(batch=second)
        second = wait_for_batch(second.pk, timeout=120, clusters=qclusters)

        assert second.status == Batch.Status.COMPLETED, qclusters.logs()
        assert fake.stats.total == 1100  # exactly the 100 corrected rows called the model
        called = set(second.results.filter(cached=False).values_list("index", flat=True))
        assert called == changed
        assert second.results.filter(cached=True).count() == 900
        comparison = iterations.compare_batches(first, second, changed_only=True, limit=None)
        assert comparison.changed == 100 and {r.index for r in comparison.page} == changed

        third = iterations.batch_new_version(batch=second, owner=user, name="Renamed only")
        iterations.batch_start(batch=third)
        third = wait_for_batch(third.pk, timeout=120, clusters=qclusters)

        assert third.status == Batch.Status.COMPLETED, qclusters.logs()
        assert fake.stats.total == 1100  # no row called the model
        assert third.results.filter(cached=True).count() == 1000
        assert third.prompt_tokens == 0 and third.output_tokens == 0
