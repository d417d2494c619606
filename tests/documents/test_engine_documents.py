"""The engine attaches each row's documents to its request: inline under the inline limit,
otherwise through the Files API, uploaded once and reused until shortly before it expires."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from batches.batch_rows import batch_add_rows
from batches.models import Batch, BatchDocument
from batches.services import batch_create, batch_retry_row
from tests.helpers.documents import digest, pdf_bytes, png_bytes, upload
from tests.helpers.engine import run_until_done

pytestmark = [pytest.mark.usefixtures("enqueued"), pytest.mark.django_db(transaction=True)]


def documents_batch(user, files):
    return batch_create(owner=user, prompt="Extract the total amount from {{filename}}",
                        documents=[upload(name, data) for name, data in files])


def test_every_row_is_answered_about_its_own_document_inline(user, media, fake):
    files = [(f"menu-{i}.pdf", pdf_bytes(i % 3 + 1, f"menu {i}")) for i in range(4)]
    files += [(f"photo-{i}.png", png_bytes(seed=i)) for i in range(3)]
    batch = run_until_done(documents_batch(user, files))
    assert batch.status == Batch.Status.COMPLETED
    for row, (name, data) in zip(batch.results.order_by("index"), files, strict=True):
        assert row.output.startswith(f"ECHO: Extract the total amount from {name} [")
        assert f"sha256:{digest(data)} {len(data)} bytes" in row.output
        if name.endswith(".pdf"):
            assert f"{row.input['pages']} pages]" in row.output
    assert fake.files.snapshot()["parts_inline"] == 7
    assert fake.files.snapshot()["uploads_started"] == 0


def test_documents_over_the_inline_limit_go_through_the_files_api_once(
        user, media, fake, settings):
    settings.GEMINI_INLINE_MAX_MB = 0.0005  # about 500 bytes: every PDF is larger
    files = [(f"doc-{i}.pdf", pdf_bytes(2, f"doc {i}")) for i in range(3)]
    batch = documents_batch(user, files)
    fake.configure(fail_times={"doc-1.pdf": 1})  # one row is retried once
    batch = run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED
    for row, (_, data) in zip(batch.results.order_by("index"), files, strict=True):
        assert f"sha256:{digest(data)}" in row.output and "2 pages]" in row.output
    assert batch.results.get(index=1).attempts == 2  # failed once, then answered
    stats = fake.files.snapshot()
    assert stats["uploads_finished"] == 3  # the retry reused its file's URI
    assert stats["parts_file"] == 3 and stats["parts_inline"] == 0
    assert all(d.gemini_file_uri for d in BatchDocument.objects.filter(batch=batch))


def test_a_failed_upload_is_retried_and_the_row_still_answers(user, media, fake, settings):
    settings.GEMINI_INLINE_MAX_MB = 0.0005
    files = [("ok.pdf", pdf_bytes(1, "ok")), ("flaky.pdf", pdf_bytes(3, "flaky"))]
    fake.configure(fail_upload_once=["flaky"])
    batch = run_until_done(documents_batch(user, files))
    assert batch.status == Batch.Status.COMPLETED
    row = batch.results.get(index=1)
    assert row.attempts == 2 and f"sha256:{digest(files[1][1])}" in row.output
    assert fake.files.snapshot()["uploads_failed"] == 1


def test_a_file_uri_close_to_expiry_is_uploaded_again(user, media, fake, settings):
    settings.GEMINI_INLINE_MAX_MB = 0.0005
    fake.configure(fail_permanently=["again"])
    batch = run_until_done(documents_batch(user, [("again.pdf", pdf_bytes(1, "x"))]))
    assert batch.results.get().status == "failed"
    assert fake.files.snapshot()["uploads_finished"] == 1
    BatchDocument.objects.filter(batch=batch).update(
        gemini_file_expires_at=timezone.now() + timedelta(minutes=10))
    fake.configure(fail_permanently=[])
    batch_retry_row(batch=batch, index=0)
    batch = run_until_done(batch)
    assert batch.results.get().status == "succeeded"
    assert fake.files.snapshot()["uploads_finished"] == 2


def test_a_file_gemini_no_longer_has_is_uploaded_again_and_the_row_retried(
        user, media, fake, settings):
    settings.GEMINI_INLINE_MAX_MB = 0.0005
    fake.configure(fail_permanently=["gone"])
    batch = run_until_done(documents_batch(user, [("gone.pdf", pdf_bytes(1, "gone"))]))
    assert fake.files.snapshot()["uploads_finished"] == 1
    fake.files.expire_all()  # Gemini dropped it early: the cached URI still looks valid
    fake.configure(fail_permanently=[])
    batch_retry_row(batch=batch, index=0)
    batch = run_until_done(batch)
    row = batch.results.get()
    assert row.status == "succeeded" and row.attempts == 2, row.error
    assert fake.files.snapshot()["uploads_finished"] == 2
    assert batch.status == Batch.Status.COMPLETED and not batch.last_error


def test_documents_added_to_a_finished_batch_reopen_it_and_run(user, media, fake):
    batch = run_until_done(documents_batch(user, [("a.pdf", pdf_bytes(1, "a"))]))
    assert batch.status == Batch.Status.COMPLETED and batch.finished_at
    more = [("b.pdf", pdf_bytes(2, "b")), ("c.png", png_bytes(seed=3)),
            ("d.png", png_bytes(seed=4))]
    added = batch_add_rows(batch=batch, documents=[upload(n, d) for n, d in more])
    assert added == 3
    assert batch.status == Batch.Status.RUNNING and batch.finished_at is None
    assert list(batch.results.order_by("index").values_list("index", flat=True)) == [0, 1, 2, 3]
    batch = run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED and batch.total_rows == 4
    for row, (_, data) in zip(batch.results.filter(index__gte=1).order_by("index"), more,
                              strict=True):
        assert f"sha256:{digest(data)}" in row.output


def test_each_spreadsheet_row_is_answered_about_the_file_its_column_names(user, media, fake):
    from tests.conftest import csv_file

    pdf, png = pdf_bytes(2, "invoice a"), png_bytes(seed=11)
    sheet = csv_file("customer,scan\nAnn,a.pdf\nBob,b.png\nCid,a.pdf\n")
    batch = batch_create(owner=user, prompt="Total for {{customer}} in {{file:scan}}",
                         file=sheet, filename="rows.csv",
                         documents=[upload("a.pdf", pdf), upload("b.png", png)])
    batch = run_until_done(batch)
    outputs = list(batch.results.order_by("index").values_list("output", flat=True))
    assert outputs[0].startswith("ECHO: Total for Ann in a.pdf [application/pdf")
    assert f"sha256:{digest(pdf)}" in outputs[0] and f"sha256:{digest(pdf)}" in outputs[2]
    assert f"sha256:{digest(png)}" in outputs[1]
