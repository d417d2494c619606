"""django-q2 entry points for notifications. Thin: ids in, delivery.py does the work."""

from __future__ import annotations

from batches.lib.schedules import ensure_schedule

SWEEP_SCHEDULE = "batches.notifications.sweep"


def deliver(delivery_id: int) -> str:
    from batches.notifications.delivery import deliver as attempt

    return attempt(delivery_id)


def sweep() -> str:
    from batches.notifications.delivery import sweep as run

    recorded, enqueued = run()
    return f"{recorded} waiting events recorded, {enqueued} deliveries enqueued"


def ensure_schedules() -> None:
    """Create (or repair) the every-minute sweep."""
    ensure_schedule(SWEEP_SCHEDULE, "batches.notifications.tasks.sweep", minutes=1)
