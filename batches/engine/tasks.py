"""django-q2 entry points. Thin: ids in, domain code does the work.

Every task may be lost or run twice; row state and retry counts live in our tables, and the
rescue schedule restarts whatever a lost task left behind."""

from __future__ import annotations

from django.conf import settings
from django_q.tasks import async_task

from batches.lib.schedules import ensure_schedule

RESCUE_SCHEDULE = "batches.rescue"


def enqueue_batch(batch_id: int) -> None:
    """Start enough slices to keep every worker busy on the batch; a batch-mode batch gets its
    job submitter instead (it starts a slice for rows handed to the online engine)."""
    from batches.models import Batch, Mode

    if Batch.objects.filter(pk=batch_id, mode=Mode.BATCH).exists():
        async_task("batches.batchmode.tasks.submit", batch_id, group=f"batch-{batch_id}",
                   q_options={"task_name": f"submit batch {batch_id}"})
        return
    for _ in range(settings.Q_CLUSTER["workers"]):
        enqueue_slice(batch_id)


def enqueue_slice(batch_id: int) -> None:
    async_task("batches.engine.tasks.run_slice", batch_id, group=f"batch-{batch_id}",
               q_options={"task_name": f"slice batch {batch_id}"})


def run_slice(batch_id: int) -> str:
    from batches.engine.slice import run_slice as run

    report = run(batch_id, enqueue=enqueue_slice)
    return (f"{report.claimed} rows claimed, {report.written} written, "
            f"{report.released} given back" + (", continued" if report.continued else ""))


def rescue() -> str:
    from batches.engine.recovery import rescue as sweep

    report = sweep(enqueue=enqueue_batch)
    return (f"{report.released} leases released, batches enqueued {report.enqueued}, "
            f"finalised {report.finalised}")


def ensure_schedules() -> None:
    """Create (or repair) the every-minute rescue schedule."""
    ensure_schedule(RESCUE_SCHEDULE, "batches.engine.tasks.rescue", minutes=1)
