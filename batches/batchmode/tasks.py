"""django-q2 entry points of batch mode. Thin: ids in, submit/collect do the work.

Polling runs from a Schedule every minute (`ensure_schedules`); with BATCH_MODE_POLL_S under a
minute one poll task loops (one at a time: a lock in the shared cache) for up to
BATCH_SLICE_SECONDS and enqueues its own continuation while jobs are open."""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django_q.tasks import async_task

from batches.lib.schedules import ensure_schedule

POLL_SCHEDULE = "batches.batchmode.poll"
POLLER_KEY = "batchmode:poller"


def submit(batch_id: int) -> str:
    from batches.batchmode.submit import submit as run
    from batches.engine.tasks import enqueue_slice

    # Half the slice budget: creating a job (an upload, then the create call) takes seconds.
    report = run(batch_id, deadline=time.monotonic() + settings.BATCH_SLICE_SECONDS / 2)
    if report.online:
        enqueue_slice(batch_id)
    if report.continued:
        async_task("batches.batchmode.tasks.submit", batch_id, group=f"batch-{batch_id}",
                   q_options={"task_name": f"submit batch {batch_id}"})
    if report.jobs:
        enqueue_poll()
    return (f"{len(report.jobs)} jobs, {report.rows} rows submitted"
            + (f"; error: {report.error}" if report.error else ""))


def enqueue_poll() -> None:
    """Start the poll loop now when polls come faster than the schedule's minute."""
    if settings.BATCH_MODE_POLL_S < 60:
        async_task("batches.batchmode.tasks.poll", q_options={"task_name": "batch mode poll"})


def poll() -> str:
    from batches.batchmode.collect import poll_all
    from batches.engine.tasks import enqueue_batch

    budget_s = max(1.0, float(settings.BATCH_SLICE_SECONDS))
    token = uuid.uuid4().hex
    # The lock outlives a poller that died with it by at most about one budget; a pass that
    # runs longer lets a second poller in, which the per-job poll lease keeps harmless.
    if not cache.add(POLLER_KEY, token, timeout=int(2 * budget_s) + 1):
        return "another poller is running"
    deadline = time.monotonic() + budget_s
    polled = written = 0
    try:
        while True:
            report = poll_all(enqueue=enqueue_batch, deadline=deadline)
            polled += report.polled
            written += report.written
            interval = settings.BATCH_MODE_POLL_S
            if not report.open or interval >= 60 or time.monotonic() + interval >= deadline:
                break
            time.sleep(interval)
    finally:
        if cache.get(POLLER_KEY) == token:
            cache.delete(POLLER_KEY)
    if report.open:
        enqueue_poll()
    return f"{polled} polls, {written} rows written, {report.open} jobs open"


def cancel_jobs(batch_id: int) -> str:
    from batches.batchmode.collect import cancel_open_jobs

    done = cancel_open_jobs(batch_id)
    enqueue_poll()
    return f"{done} jobs cancelled"


def cancel_names(names: list[str]) -> str:
    """Cancel jobs of a deleted batch (their rows are gone, so nothing is collected)."""
    from batches.batchmode.collect import cancel_open_jobs

    return f"{cancel_open_jobs(names=names)} jobs cancelled"


def ensure_schedules() -> None:
    """Create (or repair) the every-minute poll schedule."""
    ensure_schedule(POLL_SCHEDULE, "batches.batchmode.tasks.poll", minutes=1)
