"""Re-running chosen rows, succeeded ones included, with a fresh answer from the model."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from batches import services
from batches.iterations.samples import _check_indexes
from batches.models import Batch, BatchResult


def batch_rerun_rows(*, batch: Batch, indexes: Sequence[int]) -> int:
    """Run these rows of the batch again, bypassing the result cache. Returns the rows."""
    if batch.is_draft:
        raise services.ActionNotAllowed(
            "The batch is a draft; try rows on a sample run instead, or start it.")
    if not isinstance(indexes, list | tuple) or not indexes:
        raise services.InvalidInput("Choose at least one row.", field="indexes")
    chosen = sorted(set(_check_indexes(indexes, batch.total_rows)))
    return results_rerun(results=batch.results.filter(index__in=chosen))


def results_rerun(*, results) -> int:
    """Run these rows (of any batches; drafts' rows are skipped) again, bypassing the cache.

    Rows still running are left alone: their answer is on its way."""
    with transaction.atomic():
        rows = results.exclude(batch__status=Batch.Status.DRAFT).exclude(
            status=BatchResult.Status.RUNNING)
        batch_ids = set(rows.values_list("batch_id", flat=True).distinct())
        count = BatchResult.objects.filter(pk__in=list(rows.values_list("pk", flat=True))
                                           ).reset(bypass_cache=True)
        for batch in Batch.objects.filter(pk__in=batch_ids):
            batch.refresh_counts()  # the reset rows' answers no longer count
            if not batch.paused:
                services.reopen(batch)
    return count
