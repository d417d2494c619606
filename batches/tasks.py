"""django-q2 entry points. Thin: ids in, domain code does the work."""

from __future__ import annotations

from django.conf import settings
from django_q.tasks import async_task


def enqueue_batch(batch_id: int) -> None:
    """Start enough slices to keep every worker busy on the batch."""
    for _ in range(settings.Q_CLUSTER["workers"]):
        async_task("batches.tasks.run_slice", batch_id, group=f"batch-{batch_id}",
                   q_options={"task_name": f"slice batch {batch_id}"})


def run_slice(batch_id: int) -> None:
    from batches import engine

    engine.run_slice(batch_id)
