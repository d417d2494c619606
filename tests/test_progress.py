"""A batch's live figures: rate and ETA (models.Progress)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from batches.models import Batch, BatchResult, Progress

pytestmark = pytest.mark.django_db


def test_the_rate_of_a_fast_batch_is_read_from_its_newest_rows_not_a_minutes_count(
        make_batch, monkeypatch):
    monkeypatch.setattr(Progress, "RATE_SAMPLE", 5)
    batch = make_batch([{"text": f"row {i}"} for i in range(10)])
    now = timezone.now()
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.RUNNING,
                                             started_at=now - timedelta(minutes=5))
    # Seven rows ended in the last minute: five within 10 s (the newest one cancelled, so it
    # did not run), then two long before.
    for index, ago in enumerate((2, 4, 6, 8, 10, 30, 50)):
        status = "cancelled" if index == 0 else "succeeded" if index % 2 else "failed"
        BatchResult.objects.filter(batch=batch, index=index).update(
            status=status, finished_at=now - timedelta(seconds=ago))
    batch.refresh_from_db()

    progress = batch.progress()

    # The newest five took 10 s and four of them ran: 24 rows a minute (a whole minute's
    # count would say 6).
    assert 23 <= progress.rows_per_minute <= 25
    assert progress.eta_seconds == 7  # 3 rows left at 0.4 rows a second
