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
