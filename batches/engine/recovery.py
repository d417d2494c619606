"""The rescue sweep, run every minute by a django-q2 Schedule (batches.engine.tasks.rescue).

Whatever a lost task or a killed worker left behind is found here from the tables alone: expired
leases go back to pending, batches with claimable rows and no live slice get slices again,
batches with nothing open are finalised, and the status counters of the batches still moving are
compacted (batches/status_counts.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from batches import resultcache
from batches import status_counts as counters
from batches.engine import db
from batches.models import Batch, BatchResult

log = logging.getLogger("batches.engine")

Enqueue = Callable[[int], Any]


@dataclass
class RescueReport:
    released: int = 0
    enqueued: list[int] = field(default_factory=list)
    finalised: list[int] = field(default_factory=list)


def rescue(*, enqueue: Enqueue) -> RescueReport:
    """Every minute: expired leases back to pending, stalled batches re-enqueued, finished
    batches finalised."""
    report = RescueReport(released=BatchResult.objects.release_expired_leases())
    now = timezone.now()
    heartbeat_s = max(1.0, settings.BATCH_LEASE_SECONDS / 4)
    stale = now - timedelta(seconds=math.ceil(2 * heartbeat_s))
    for batch in Batch.objects.filter(status__in=Batch.ACTIVE_STATUSES):
        counters.compact(batch.pk)
        if batch.cancel_requested:
            batch.results.cancel_pending()
        if batch.finalise_if_done():
            report.finalised.append(batch.pk)
            continue
        if batch.paused or batch.cancel_requested or batch.status == Batch.Status.PAUSED:
            continue
        beat = batch.slice_heartbeat_at
        if beat is not None and beat >= stale:
            continue
        if db.claimable(batch.results.all(), now).exists():
            enqueue(batch.pk)
            report.enqueued.append(batch.pk)
    _rescue_samples(now, stale, enqueue, report)
    resultcache.purge_expired()
    if report.released or report.enqueued:
        log.info("Rescue: %d rows released, batches enqueued: %s", report.released,
                 report.enqueued)
    return report


def _rescue_samples(now, stale, enqueue: Enqueue, report: RescueReport) -> None:
    """A draft's sample run left behind gets a slice again; a finished one stops being runnable."""
    for batch in Batch.objects.filter(status=Batch.Status.DRAFT, sampling=True):
        counters.compact(batch.pk)
        sample = batch.results.filter(sample=True)
        open_rows = BatchResult.objects.filter(batch_id=OuterRef("pk"), sample=True,
                                               status__in=[db.PENDING, db.RUNNING])
        # One statement, so a sample asked for meanwhile is never switched off.
        if Batch.objects.filter(pk=batch.pk, status=Batch.Status.DRAFT).exclude(
                Exists(open_rows)).update(sampling=False):
            continue
        beat = batch.slice_heartbeat_at
        if (beat is None or beat < stale) and db.claimable(sample, now).exists():
            enqueue(batch.pk)
            report.enqueued.append(batch.pk)

