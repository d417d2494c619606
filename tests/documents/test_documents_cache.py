"""The result cache with documents: an attached document enters the key by its content, so the
same file again is reused and another file under the same name is not."""

from __future__ import annotations

import pytest

from batches.services import batch_create
from tests.helpers.documents import digest, pdf_bytes, upload
from tests.helpers.engine import run_until_done

pytestmark = [pytest.mark.usefixtures("enqueued"), pytest.mark.django_db(transaction=True)]


def report_batch(user, data: bytes):
    return run_until_done(batch_create(owner=user, prompt="Summarise {{filename}}",
                                       documents=[upload("report.pdf", data)]))


def test_the_same_document_again_is_reused_and_another_one_under_its_name_is_not(
        user, media, fake):
    first, second = pdf_bytes(1, "first"), pdf_bytes(1, "second")
    report_batch(user, first)
    calls = fake.stats.total

    again = report_batch(user, first)
    other = report_batch(user, second)

    assert again.results.get().cached and fake.stats.total == calls + 1
    row = other.results.get()
    assert not row.cached and f"sha256:{digest(second)}" in row.output


def test_a_new_version_of_a_documents_batch_keeps_its_own_copy_of_the_documents(
        user, media, fake):
    from batches import iterations, services

    data = pdf_bytes(1, "kept")
    parent = report_batch(user, data)
    version = iterations.batch_new_version(batch=parent, owner=user)
    services.batch_delete(batch=parent)  # removes the parent's stored documents

    iterations.batch_start(batch=version)
    run_until_done(version)

    row = version.results.get()
    assert version.status == "completed" and row.cached  # same request: from the cache
    assert version.documents.get().sha256.startswith(digest(data))
    iterations.batch_rerun_rows(batch=version, indexes=[0])  # and the model can read it again
    run_until_done(version)
    row.refresh_from_db()
    assert not row.cached and f"sha256:{digest(data)}" in row.output


def test_a_new_version_keeps_the_files_row_numbers(user, enqueued):
    import io

    from batches import iterations

    parent = batch_create(owner=user, prompt="Say {{text}}", filename="notes.csv",
                          file=io.BytesIO(b"text\none\n\ntwo\n"))
    version = iterations.batch_new_version(batch=parent, owner=user)
    assert list(version.results.order_by("index").values_list("source_line", flat=True)) == \
        list(parent.results.order_by("index").values_list("source_line", flat=True))
