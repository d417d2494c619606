"""Rows per status of each batch, kept by the database: triggers on the results table (created by
migration 0014) add to these counters in the statement that changes a row's status, so every
path (engine, admin, raw SQL, COPY) is counted, and a reader sees counts that committed with the
rows. Python code only reads them and compacts them; it never writes a count.

PostgreSQL: each statement appends delta rows (batch, status, +/-n), insert only, so no writer
waits on a counter row; `compact` folds a batch's deltas into one row per status. SQLite (one
writer at a time): one row per (batch, status), updated in place. A reader sums per (batch,
status) either way. This module imports only Django: batches/models.py imports it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, models


class BatchStatusCount(models.Model):
    # No database FK: a delta row written while its batch is deleted in the same transaction
    # would fail the deferred constraint at commit. A trigger on the batches table deletes a
    # batch's counters with it.
    batch = models.ForeignKey("batches.Batch", on_delete=models.DO_NOTHING, db_constraint=False,
                              db_index=False, related_name="+")
    status = models.CharField(max_length=10)
    n = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["batch", "status"], name="status_count_batch_status")]

    def __str__(self) -> str:
        return f"{self.batch_id} {self.status} {self.n:+d}"


def sums(batch_ids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(batch_id, status, rows) for the given batches; statuses without rows may be missing."""
    return list(BatchStatusCount.objects.filter(batch_id__in=list(batch_ids)).order_by()
                .values_list("batch_id", "status").annotate(rows=models.Sum("n"))
                .values_list("batch_id", "status", "rows"))


# SKIP LOCKED: rows another compaction (or a batch's deletion) holds are left for the next run,
# so two compactions of one batch never wait on each other, let alone deadlock. Each delta row is
# deleted by one statement only, which re-inserts its n, so the sums never change.
_COMPACT_SQL = """
WITH gone AS (
    DELETE FROM batches_batchstatuscount WHERE id IN (
        SELECT id FROM batches_batchstatuscount WHERE batch_id = %s
        FOR UPDATE SKIP LOCKED)
    RETURNING status, n
)
INSERT INTO batches_batchstatuscount (batch_id, status, n)
SELECT %s, status, sum(n) FROM gone GROUP BY status HAVING sum(n) <> 0
"""


def compact(batch_id: int) -> None:
    """Fold a batch's delta rows into one row per status (PostgreSQL; SQLite keeps one)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(_COMPACT_SQL, [batch_id, batch_id])
