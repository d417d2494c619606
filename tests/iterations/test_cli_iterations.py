"""manage.py batch_run --draft, batch_sample and batch_start, with the engine in-process."""

from __future__ import annotations

import threading

import pytest
from django.core.management import CommandError

from batches import engine
from batches.models import Batch
from tests.helpers import cli as cli_helpers
from tests.helpers import engine as engine_helpers

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued
admin_user = cli_helpers.admin_user
run = cli_helpers.run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rows_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text\ngreat\nawful\nfine\n", encoding="utf-8")
    return path



def test_batch_run_draft_stores_a_draft_and_says_how_to_try_it(admin_user, rows_csv, enqueued):
    out = run("batch_run", str(rows_csv), "--prompt", "Say: {{text}}", "--draft")
    batch = Batch.objects.get()
    assert batch.status == "draft" and enqueued == []
    assert f"Created draft batch {batch.pk} (3 rows)" in out
    assert f"batch_sample {batch.pk}" in out and f"batch_start {batch.pk}" in out


def test_draft_and_wait_together_are_refused(admin_user, rows_csv):
    with pytest.raises(CommandError, match="--wait needs a batch that runs"):
        run("batch_run", str(rows_csv), "--prompt", "Say: {{text}}", "--draft", "--wait")
    assert not Batch.objects.exists()


def test_batch_sample_waits_and_prints_the_answers(fake, admin_user, rows_csv, enqueued):
    run("batch_run", str(rows_csv), "--prompt", "Say: {{text}}", "--draft")
    batch = Batch.objects.get()
    worker = threading.Thread(target=lambda: engine.run_slice(batch.pk, budget_s=5))
    out_box: list[str] = []
    sampler = threading.Thread(target=lambda: out_box.append(
        run("batch_sample", str(batch.pk), "--size", "2", "--wait", "--timeout", "20")))
    sampler.start()
    engine_helpers.wait_for(lambda: batch.results.filter(sample=True).exists())
    worker.start()
    worker.join(20)
    sampler.join(20)
    out = out_box[0]
    assert f"Trying batch {batch.pk} on rows 0, 1." in out
    assert "#0 Say: great\n  -> ECHO: Say: great" in out and "#2" not in out


def test_batch_sample_refuses_rows_that_do_not_exist(admin_user, rows_csv, enqueued):
    run("batch_run", str(rows_csv), "--prompt", "Say: {{text}}", "--draft")
    batch = Batch.objects.get()
    with pytest.raises(CommandError, match="The batch has no row 7"):
        run("batch_sample", str(batch.pk), "--rows", "0,7")
    with pytest.raises(CommandError, match="is not a list of row numbers"):
        run("batch_sample", str(batch.pk), "--rows", "a")


def test_batch_start_starts_a_draft_once(admin_user, rows_csv, enqueued):
    run("batch_run", str(rows_csv), "--prompt", "Say: {{text}}", "--draft")
    batch = Batch.objects.get()
    assert run("batch_start", str(batch.pk)) == f"Started batch {batch.pk}: 3 rows.\n"
    assert enqueued == [batch.pk]
    with pytest.raises(CommandError, match="Only a draft can be started"):
        run("batch_start", str(batch.pk))


def test_batch_status_says_how_many_rows_came_from_the_cache(admin_user, make_batch, enqueued):
    batch = make_batch()
    Batch.objects.filter(pk=batch.pk).update(cached_count=2, saved_prompt_tokens=30,
                                             saved_output_tokens=12)
    out = run("batch_status", str(batch.pk))
    assert "Cache:     2 of 3 rows from the cache, 42 tokens saved" in out
