"""`manage.py batch_add ID FILE...`: spreadsheets or documents added to a batch."""

from __future__ import annotations

import pytest
from django.core.management import CommandError
from django.utils import timezone

from batches.models import Batch
from batches.services import batch_cancel, batch_create
from tests.helpers import cli as cli_helpers
from tests.helpers.documents import pdf_bytes, png_bytes, stored_files, upload

run = cli_helpers.run

pytestmark = pytest.mark.usefixtures("enqueued")


def finished(batch: Batch) -> Batch:
    Batch.objects.filter(pk=batch.pk).update(started_at=timezone.now(), status="running")
    batch.results.update(status="succeeded", output="ok", finished_at=timezone.now())
    batch.finalise_if_done()
    batch.refresh_from_db()
    return batch


def test_a_csv_added_to_a_finished_batch_reopens_it(user, tmp_path):
    batch = finished(batch_create(owner=user, prompt="Say: {{text}}", rows=[{"text": "a"}]))
    path = tmp_path / "more.csv"
    path.write_text("text\nb\nc\n")
    out = run("batch_add", str(batch.pk), str(path))
    assert f"Added 2 rows to batch {batch.pk}" in out and "now has 3 rows and is running" in out
    assert list(batch.results.order_by("index").values_list("prompt", flat=True)) == [
        "Say: a", "Say: b", "Say: c"]


def test_documents_are_added_to_a_documents_batch(user, tmp_path, media):
    batch = batch_create(owner=user, prompt="Total in {{filename}}",
                         documents=[upload("a.pdf", pdf_bytes(1, "a"))])
    (tmp_path / "b.pdf").write_bytes(pdf_bytes(2, "b"))
    (tmp_path / "c.png").write_bytes(png_bytes())
    out = run("batch_add", str(batch.pk), str(tmp_path / "b.pdf"), str(tmp_path / "c.png"))
    assert "Added 2 rows" in out
    assert [r.input["filename"] for r in batch.results.order_by("index")] == [
        "a.pdf", "b.pdf", "c.png"]
    assert len(stored_files(media)) == 3


def test_a_bad_document_is_refused_naming_it_and_nothing_is_added(user, tmp_path, media):
    batch = batch_create(owner=user, prompt="Total in {{filename}}",
                         documents=[upload("a.pdf", pdf_bytes(1, "a"))])
    (tmp_path / "ok.png").write_bytes(png_bytes())
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\ntruncated")
    with pytest.raises(CommandError, match=r"broken\.pdf is a damaged PDF") as info:
        run("batch_add", str(batch.pk), str(tmp_path / "ok.png"), str(tmp_path / "broken.pdf"))
    assert info.value.returncode == 2
    assert batch.results.count() == 1 and len(stored_files(media)) == 1


def test_adding_to_a_cancelled_batch_is_refused(user, tmp_path):
    batch = batch_create(owner=user, prompt="Say: {{text}}", rows=[{"text": "a"}])
    batch_cancel(batch=batch)
    path = tmp_path / "more.csv"
    path.write_text("text\nb\n")
    with pytest.raises(CommandError, match="cancelled"):
        run("batch_add", str(batch.pk), str(path))
    assert batch.results.count() == 1


def test_an_unknown_batch_is_an_error(db, tmp_path):
    with pytest.raises(CommandError, match="There is no batch 999"):
        run("batch_add", "999", str(tmp_path / "x.csv"))
