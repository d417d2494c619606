"""django-q2 entry points for notifications. Thin: ids in, delivery.py does the work."""

from __future__ import annotations

SWEEP_SCHEDULE = "batches.notifications.sweep"


def deliver(delivery_id: int) -> str:
    from batches.notifications.delivery import deliver as attempt

    return attempt(delivery_id)


def sweep() -> str:
    from batches.notifications.delivery import sweep as run

    recorded, enqueued = run()
    return f"{recorded} waiting events recorded, {enqueued} deliveries enqueued"


def ensure_schedules() -> None:
    """Create (or repair) the every-minute sweep; safe to run any number of times."""
    from django_q.models import Schedule

    wanted = {"func": "batches.notifications.tasks.sweep", "schedule_type": Schedule.MINUTES,
              "minutes": 1, "repeats": -1}
    schedule, created = Schedule.objects.get_or_create(name=SWEEP_SCHEDULE, defaults=wanted)
    if not created and any(getattr(schedule, k) != v for k, v in wanted.items()):
        for name, value in wanted.items():
            setattr(schedule, name, value)
        schedule.save()
