"""Documents through real `qcluster` processes reading S3-compatible storage (no shared disk):
two clusters, one killed mid-batch, every row answered about its own document."""

from __future__ import annotations

import pytest

from batches import engine
from batches.engine import tasks
from batches.fake_gemini import FakeGemini
from batches.models import Batch, BatchDocument
from batches.services import batch_create, batch_delete
from tests.helpers import workers
from tests.helpers.documents import digest, pdf_bytes, png_bytes, upload
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_fifty_documents_on_s3_survive_a_killed_worker_and_leave_no_file_behind(
        qclusters, s3, user):
    files = [(f"menu-{i:02d}.pdf", pdf_bytes(1 + i % 4, f"menu {i}")) for i in range(25)]
    files += [(f"photo-{i:02d}.png", png_bytes(8, 8, seed=i)) for i in range(25)]
    with FakeGemini(latency_ms=150, jitter_ms=50, fail_upload_once=["menu-03"]) as fake:
        # Larger PDFs go through the Files API, the rest inline: both paths under one crash.
        env = {**s3.env(), "GEMINI_INLINE_MAX_MB": "0.001"}
        first = qclusters.start(fake.url, **env)
        qclusters.start(fake.url, **env)
        batch = batch_create(owner=user, prompt="Extract the total amount from {{filename}}",
                             documents=[upload(n, d) for n, d in files], concurrency=8)
        assert len(s3.keys()) == 50
        tasks.enqueue_batch(batch.pk)
        wait_for_batch(batch.pk, timeout=60, clusters=qclusters,
                       until=lambda b: b.status_counts()["succeeded"] >= 10)
        first.kill()

        batch = wait_for_batch(batch.pk, timeout=90, clusters=qclusters, poll=0.5,
                               tick=lambda: engine.rescue(enqueue=tasks.enqueue_batch))

        assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
        rows = list(batch.results.order_by("index"))
        for row, (name, data) in zip(rows, files, strict=True):
            assert row.output.startswith(f"ECHO: Extract the total amount from {name} [")
            assert f"sha256:{digest(data)} {len(data)} bytes" in row.output
            if name.endswith(".pdf"):
                assert row.output.endswith(f" {1 + int(name[5:7]) % 4} pages]")
        uploads = fake.files.snapshot()
        assert uploads["uploads_failed"] == 1 and uploads["parts_file"] > 0
        assert uploads["parts_inline"] > 0
        assert BatchDocument.objects.filter(batch=batch).exclude(gemini_file_uri="").exists()

    batch_delete(batch=batch)
    assert s3.keys() == []
