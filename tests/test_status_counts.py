"""The per-batch status counters the database keeps (batches/status_counts.py, migration 0014):
after every way rows are inserted, moved or deleted, they say what a live count over the rows
says; compaction keeps the sums; a deleted batch leaves no counters behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from batches import engine, iterations, retention, services
from batches.engine import db as engine_db
from batches.models import Batch, BatchResult, status_counts_for
from batches.providers import Response
from batches.status_counts import BatchStatusCount, compact
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import assert_counters_match_rows, run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

ZERO = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def counter_rows(batch_id: int) -> list[tuple[str, int]]:
    """(status, n) of the batch's counter rows but those at 0 (SQLite keeps them)."""
    return sorted(BatchStatusCount.objects.filter(batch_id=batch_id).exclude(n=0)
                  .values_list("status", "n"))


def assert_one_row_per_status(batch_id: int) -> None:
    statuses = list(BatchStatusCount.objects.filter(batch_id=batch_id)
                    .values_list("status", flat=True))
    assert len(statuses) == len(set(statuses)), counter_rows(batch_id)


def test_an_ingest_is_counted_on_either_databases_insert_path(make_batch, enqueued):
    # COPY on PostgreSQL, executemany on SQLite (batches/row_insert.py), in three chunks.
    batch = make_batch(rows(10_001))
    assert batch.status_counts() == {**ZERO, "pending": 10_001}
    assert_counters_match_rows(batch.pk)


def test_a_claim_and_the_engines_writes_are_counted(make_batch, enqueued):
    batch = make_batch(rows(6))
    claimed = engine_db.claim_rows(4, lease_s=30)
    assert batch.status_counts() == {**ZERO, "pending": 2, "running": 4}

    answer = Response("ok", "STOP", 1, 1, "m")
    engine_db.write_outcomes([
        engine_db.Outcome(claimed[0], engine_db.Kind.SUCCEEDED, response=answer),
        engine_db.Outcome(claimed[1], engine_db.Kind.SUCCEEDED, response=answer),
        engine_db.Outcome(claimed[2], engine_db.Kind.FAILED, error="bad request"),
        engine_db.Outcome(claimed[3], engine_db.Kind.RETRY, error="503",
                          not_before=timezone.now()),
    ])
    assert batch.status_counts() == {**ZERO, "pending": 3, "succeeded": 2, "failed": 1}
    assert_counters_match_rows(batch.pk)


@pytest.mark.django_db(transaction=True)  # the engine writes from a thread of its own
def test_a_batch_run_to_its_end_is_counted_and_compacted_when_finalised(fake, make_batch,
                                                                      enqueued):
    batch = run_until_done(make_batch(rows(12)))
    assert batch.status == Batch.Status.COMPLETED
    assert batch.status_counts() == {**ZERO, "succeeded": 12}
    assert counter_rows(batch.pk) == [("succeeded", 12)]
    assert_one_row_per_status(batch.pk)


def test_retries_from_the_services_and_the_admin_are_counted(make_batch, enqueued, admin_client):
    batch = make_batch(rows(6))
    batch.results.filter(index__lt=4).update(status="failed", finished_at=timezone.now())
    batch.results.filter(index=4).update(status="cancelled")
    services.batch_retry_failed(batch=batch)
    assert batch.status_counts() == {**ZERO, "pending": 5, "cancelled": 1}

    batch.results.filter(index__lt=2).update(status="failed")
    retried = batch.results.filter(index__in=[0, 4]).values_list("pk", flat=True)
    response = admin_client.post("/admin/batches/batchresult/", {
        "action": "retry_rows", "_selected_action": [str(pk) for pk in retried]})
    assert response.status_code == 302
    assert batch.status_counts() == {**ZERO, "pending": 5, "failed": 1}
    assert_counters_match_rows(batch.pk)


def test_a_cancel_is_counted(make_batch, enqueued):
    batch = make_batch(rows(5))
    engine_db.claim_rows(2, lease_s=30)
    services.batch_cancel(batch=batch)
    assert batch.status_counts() == {**ZERO, "running": 2, "cancelled": 3}
    assert_counters_match_rows(batch.pk)


def test_rescue_of_expired_leases_is_counted_and_compacts_the_counters(make_batch, enqueued):
    batch = make_batch(rows(5))
    engine_db.claim_rows(3, lease_s=30)
    long_ago = timezone.now() - timedelta(minutes=10)
    batch.results.filter(status="running").update(lease_expires_at=long_ago)
    Batch.objects.filter(pk=batch.pk).update(slice_heartbeat_at=long_ago)

    report = engine.rescue(enqueue=lambda batch_id: None)

    assert report.released == 3
    assert batch.status_counts() == {**ZERO, "pending": 5}
    assert_counters_match_rows(batch.pk)
    assert_one_row_per_status(batch.pk)


def test_a_new_version_is_counted_with_the_rows_it_copies(make_batch, user, enqueued):
    first = make_batch(rows(4))
    first.results.filter(index__lt=2).update(status="succeeded")
    second = iterations.batch_new_version(batch=first, owner=user)
    assert second.status_counts() == {**ZERO, "pending": 4}
    assert_counters_match_rows(second.pk)
    assert_counters_match_rows(first.pk)


def test_raw_updates_and_deletes_are_counted_and_an_update_of_no_status_adds_no_row(
        make_batch, enqueued):
    batch = make_batch(rows(6))
    BatchResult.objects.filter(batch=batch, index__lt=3).update(status="succeeded")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE batches_batchresult SET status = 'failed' "
                       "WHERE batch_id = %s AND \"index\" = 5", [batch.pk])
    BatchResult.objects.filter(batch=batch, index=0).delete()
    assert batch.status_counts() == {**ZERO, "pending": 2, "succeeded": 2, "failed": 1}

    before = counter_rows(batch.pk)
    BatchResult.objects.filter(batch=batch).update(attempts=2)  # as a lease renewal does
    assert counter_rows(batch.pk) == before
    assert_counters_match_rows(batch.pk)


def test_compaction_leaves_one_row_per_status_with_the_same_sums(make_batch, enqueued):
    batch = make_batch(rows(8))
    other = make_batch(rows(2))
    for i in range(4):
        batch.results.filter(index=i).update(status="succeeded")
    batch.results.filter(index=4).update(status="running")
    batch.results.filter(index=4).update(status="pending")
    counts = batch.status_counts()
    if connection.vendor == "postgresql":  # a delta row per statement
        assert BatchStatusCount.objects.filter(batch_id=batch.pk).count() > 6

    compact(batch.pk)

    assert batch.status_counts() == counts == {**ZERO, "pending": 4, "succeeded": 4}
    assert counter_rows(batch.pk) == [("pending", 4), ("succeeded", 4)]
    assert_one_row_per_status(batch.pk)
    assert other.status_counts() == {**ZERO, "pending": 2}


def test_status_counts_for_names_every_status_of_every_batch(make_batch, enqueued):
    batch = make_batch(rows(3))
    batch.results.filter(index=0).update(status="failed")
    draft = make_batch(rows(1), start=False)
    assert status_counts_for([batch.pk, draft.pk, 0]) == {
        batch.pk: {**ZERO, "pending": 2, "failed": 1},
        draft.pk: {**ZERO, "pending": 1},
        0: ZERO,
    }


# Deletes run in committed transactions: a counter row left pointing at a deleted batch would
# fail a foreign key only at commit.

@pytest.mark.django_db(transaction=True)
def test_deleting_a_batch_leaves_no_counter_rows(make_batch, enqueued):
    batch, kept = make_batch(rows(5)), make_batch(rows(2))
    batch.results.filter(index=0).update(status="succeeded")
    pk = batch.pk
    services.batch_delete(batch=batch)
    assert not Batch.objects.filter(pk=pk).exists()
    assert not BatchStatusCount.objects.filter(batch_id=pk).exists()
    assert kept.status_counts() == {**ZERO, "pending": 2}


@pytest.mark.django_db(transaction=True)
def test_retention_deletes_a_batch_with_its_counters(make_batch, settings, enqueued):
    settings.BATCH_RETENTION_DAYS = 30
    batch = make_batch(rows(7))
    batch.results.update(status="succeeded")
    Batch.objects.filter(pk=batch.pk).update(status="completed",
                                             finished_at=timezone.now() - timedelta(days=40))
    report = retention.cleanup()
    assert report.batch_ids == [batch.pk]
    assert not BatchStatusCount.objects.filter(batch_id=batch.pk).exists()
    assert BatchStatusCount.objects.count() == 0


TRIGGERS = {"batches_count_inserted", "batches_count_updated", "batches_count_deleted",
            "batches_count_batch_deleted"}


def test_the_counting_triggers_exist_after_all_migrations(db):
    # On SQLite, a migration that rebuilds the results or batches table (AlterField and the
    # like copy it to a new table) drops its triggers without a word, and the counters would
    # silently stop moving: such a migration must create them again (see migration 0014).
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        found = {name for (name,) in cursor.fetchall()}
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            assert "status_count_one_row" in {name for (name,) in cursor.fetchall()}
    assert TRIGGERS <= found

