"""Retention (batches.retention): only finished batches older than BATCH_RETENTION_DAYS go, with
their rows, stored documents and the cache entries no remaining batch uses; a dry run changes
nothing; the command, the schedule and the admin column."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from batches import retention, services
from batches.models import Batch, BatchDocument, BatchResult, CachedAnswer
from tests.helpers import documents as document_helpers
from tests.helpers import engine as engine_helpers
from tests.helpers.documents import pdf_bytes, stored_files, upload
from tests.helpers.engine import run_until_done

media = document_helpers.media
fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

FINISHED = ("completed", "completed_with_errors", "failed", "cancelled")
NOT_FINISHED = ("draft", "pending", "running", "paused")


def age(batch, status, days_ago):
    """Put the batch in `status`, finished (or, for an unfinished one, last touched) that long
    ago: an old finished_at alone must not make an unfinished batch go."""
    Batch.objects.filter(pk=batch.pk).update(
        status=status, finished_at=timezone.now() - timedelta(days=days_ago),
        created_at=timezone.now() - timedelta(days=days_ago + 1))
    batch.refresh_from_db()
    return batch


@pytest.fixture
def batches(make_batch, user, media):
    """Finished and unfinished batches, old (40 days) and recent (3 days), one with a document."""
    made = {}
    for status in FINISHED + NOT_FINISHED:
        made[f"old {status}"] = age(make_batch(), status, 40)
    made["recent completed"] = age(make_batch(), "completed", 3)
    with_document = services.batch_create(owner=user, prompt="Summarise {{filename}}",
                                          documents=[upload("report.pdf", pdf_bytes(1, "old"))])
    made["old document"] = age(with_document, "completed", 40)
    kept_document = services.batch_create(owner=user, prompt="Summarise {{filename}}",
                                          documents=[upload("notes.pdf", pdf_bytes(1, "new"))])
    made["recent document"] = age(kept_document, "completed", 3)
    return made


def expected_gone(batches):
    return sorted(b.pk for name, b in batches.items()
                  if name.startswith("old") and name.split(" ", 1)[1] in (*FINISHED, "document"))


def test_only_finished_batches_older_than_the_retention_go_with_their_documents(
        batches, media, settings, django_capture_on_commit_callbacks):
    settings.BATCH_RETENTION_DAYS = 30
    old_file = BatchDocument.objects.get(batch=batches["old document"]).path
    kept_file = BatchDocument.objects.get(batch=batches["recent document"]).path
    assert {old_file, kept_file} <= set(stored_files(media))
    gone = expected_gone(batches)

    with django_capture_on_commit_callbacks(execute=True):
        report = retention.cleanup()

    assert sorted(report.batch_ids) == gone and len(gone) == 5
    assert report.rows == 4 * 3 + 1 and report.documents == 1
    remaining = set(Batch.objects.values_list("pk", flat=True))
    assert remaining == {b.pk for b in batches.values()} - set(gone)
    assert not BatchResult.objects.filter(batch_id__in=gone).exists()
    assert not BatchDocument.objects.filter(batch_id__in=gone).exists()
    assert old_file not in stored_files(media) and kept_file in stored_files(media)
    for status in NOT_FINISHED:
        assert Batch.objects.get(pk=batches[f"old {status}"].pk).status == status


def test_a_dry_run_reports_the_same_batches_and_changes_nothing(
        batches, media, settings, django_capture_on_commit_callbacks):
    settings.BATCH_RETENTION_DAYS = 30
    files, rows = stored_files(media), BatchResult.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        report = retention.cleanup(dry_run=True)

    assert report.dry_run and sorted(report.batch_ids) == expected_gone(batches)
    assert Batch.objects.count() == len(batches)
    assert BatchResult.objects.count() == rows and stored_files(media) == files
    assert not Batch.objects.filter(cancel_requested=True).exists()


def test_retention_unset_keeps_everything_and_days_override_it(batches, settings):
    settings.BATCH_RETENTION_DAYS = None
    report = retention.cleanup()
    assert report.batch_ids == [] and Batch.objects.count() == len(batches)
    assert "off" in report.lines()[0]

    report = retention.cleanup(days=2, dry_run=True)  # the recent ones finished 3 days ago
    assert len(report.batch_ids) == len(expected_gone(batches)) + 2


def test_the_command_prints_what_a_dry_run_would_delete_then_deletes_it(
        batches, settings, django_capture_on_commit_callbacks):
    settings.BATCH_RETENTION_DAYS = None
    gone = expected_gone(batches)
    out = io.StringIO()
    call_command("batch_cleanup", "--dry-run", "--days", "30", stdout=out)
    assert f"Would delete {len(gone)} batches: " in out.getvalue()
    assert all(f"#{pk}" in out.getvalue() for pk in gone)
    assert Batch.objects.count() == len(batches)

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("batch_cleanup", "--days", "30", stdout=out)
    assert f"Deleted {len(gone)} batches: " in out.getvalue()
    assert "Deleted 13 rows, 1 stored documents" in out.getvalue()
    assert not Batch.objects.filter(pk__in=gone).exists()


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_the_command_refuses_a_bad_days_value(db, days):
    with pytest.raises(CommandError, match="--days"):
        call_command("batch_cleanup", "--days", days)


def test_a_batch_retried_after_the_list_was_read_is_kept(make_batch, settings, monkeypatch):
    settings.BATCH_RETENTION_DAYS = 30
    batch = age(make_batch(), "completed", 40)
    real = retention.expired

    def retried_meanwhile(days, now=None):
        found = real(days, now)
        list(found)  # the run read its list; now the user retries the batch
        Batch.objects.filter(pk=batch.pk).update(status="pending", finished_at=None)
        monkeypatch.setattr(retention, "expired", real)
        return found

    monkeypatch.setattr(retention, "expired", retried_meanwhile)
    report = retention.cleanup()
    assert report.batch_ids == [] and batch.results.count() == 3


def test_rows_are_deleted_in_chunks(make_batch, settings, monkeypatch):
    from django.db import connection

    settings.BATCH_RETENTION_DAYS = 30
    monkeypatch.setattr(retention, "ROW_CHUNK", 4)
    batch = age(make_batch(rows=[{"text": f"r{i}"} for i in range(10)]), "completed", 40)
    deletes = []

    def spy(execute, sql, params, many, context):
        if sql.startswith('DELETE FROM "batches_batchresult"'):
            deletes.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        retention.cleanup()
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert len(deletes) >= 3  # 10 rows, 4 at a time


def test_the_daily_schedule_exists_after_migrate_and_runs_the_cleanup(batches, settings):
    schedule = Schedule.objects.get(name=retention.SCHEDULE_NAME)
    assert schedule.func == "batches.retention.run" and schedule.schedule_type == Schedule.DAILY
    settings.BATCH_RETENTION_DAYS = 30
    assert "Deleted 5 batches" in retention.run()


def test_the_admin_shows_when_each_batch_will_be_deleted(batches, settings, client,
                                                         django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password=None))
    settings.BATCH_RETENTION_DAYS = 60
    old = batches["old completed"]
    when = f"{timezone.localtime(old.finished_at + timedelta(days=60)):%Y-%m-%d %H:%M}"
    page = client.get("/admin/batches/batch/").content.decode()
    assert when in page and "kept" in page  # the unfinished ones
    detail = client.get(f"/admin/batches/batch/{old.pk}/change/").content.decode()
    assert when in detail

    settings.BATCH_RETENTION_DAYS = None
    detail = client.get(f"/admin/batches/batch/{old.pk}/change/").content.decode()
    assert when not in detail and "kept" in detail


# The result cache, filled by the real engine -------------------------------------------------

@pytest.mark.usefixtures("enqueued")
@pytest.mark.django_db(transaction=True)
def test_cache_entries_go_with_the_batch_unless_a_kept_batch_uses_them(user, other_user, fake,
                                                                       media, settings):
    settings.BATCH_RETENTION_DAYS = 30
    rows = [{"text": t, "conv": c} for t, c in (("a", ""), ("b", ""), ("c", "x"), ("d", "x"))]
    old = run_until_done(services.batch_create(owner=user, prompt="Say {{text}}", rows=rows,
                                               conversation_column="conv"))
    document = run_until_done(services.batch_create(
        owner=user, prompt="Summarise {{filename}}",
        documents=[upload("report.pdf", pdf_bytes(1, "cached"))]))
    kept = run_until_done(services.batch_create(owner=user, prompt="Say {{text}}",
                                                rows=[{"text": "b"}, {"text": "e"}]))
    # Another owner's identical answer is their own entry and stays.
    theirs = run_until_done(services.batch_create(owner=other_user, prompt="Say {{text}}",
                                                  rows=[{"text": "a"}]))
    assert kept.results.get(index=0).cached  # b came from the old batch's entry
    by_owner = dict.fromkeys((user.pk, other_user.pk), 0)
    for owner_id in CachedAnswer.objects.values_list("owner_id", flat=True):
        by_owner[owner_id] += 1
    # a, b, c, d (with c's history), the document, e; the other owner's a.
    assert by_owner == {user.pk: 6, other_user.pk: 1}
    for batch in (old, document):
        age(batch, "completed", 40)

    dry = retention.cleanup(dry_run=True)
    assert dry.cache_entries == 4 and CachedAnswer.objects.count() == 7

    report = retention.cleanup()

    assert sorted(report.batch_ids) == sorted([old.pk, document.pk])
    assert report.cache_entries == 4  # a, c, d and the document's; b is used by `kept`
    prompts = {"Say b", "Say e"}
    assert CachedAnswer.objects.filter(owner=user).count() == 2
    assert {r.prompt for r in kept.results.all()} == prompts
    assert CachedAnswer.objects.filter(owner=other_user).count() == 1
    assert theirs.pk in set(Batch.objects.values_list("pk", flat=True))
    assert stored_files(media) == []
