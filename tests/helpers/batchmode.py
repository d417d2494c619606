"""Driving batch-mode batches in-process: submit, poll and online slices, as the tasks would."""

from __future__ import annotations

import time

import pytest

from batches import engine
from batches.batchmode import collect, submit
from batches.engine import db
from batches.models import Batch, BatchResult


@pytest.fixture
def batch_settings(settings):
    settings.BATCH_MODE_POLL_S = 0.05
    settings.BATCH_MODE_MAX_WAIT = 3600.0
    settings.BATCH_MODE_MAX_ROWS = 50_000
    settings.BATCH_MODE_MAX_BYTES = 500 * 1024 * 1024
    settings.BATCH_MODE_INLINE_BYTES = 1024 * 1024
    settings.BATCH_MODE_LEASE = 7200.0
    return settings


def drive(batch: Batch, *, timeout: float = 20, poll_s: float = 0.02, on_poll=None) -> Batch:
    """Submit, poll and run online rows until the batch is finished."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        submit.submit(batch.pk)
        collect.poll_all(enqueue=lambda batch_id: None)
        if on_poll is not None:
            on_poll()
        if db.claimable(BatchResult.objects.filter(batch=batch, online=True),
                        db.timezone.now()).exists():
            engine.run_slice(batch.pk, budget_s=2)
        batch.refresh_from_db()
        if batch.is_finished:
            return batch
        time.sleep(poll_s)
    raise AssertionError(f"batch {batch.pk} still {batch.status} after {timeout} s: "
                         f"{batch.status_counts()}, jobs "
                         f"{list(batch.provider_jobs.values_list('name', 'state', 'error'))}")
