"""django-q2 schedules created, or repaired, to match what the code wants."""

from __future__ import annotations


def ensure_schedule(name: str, func: str, *, minutes: int | None = None) -> None:
    """Create (or repair) the schedule `name` that runs `func` for ever: every `minutes`
    minutes, or daily without them. Safe to run any number of times."""
    from django_q.models import Schedule

    wanted: dict[str, object] = {"func": func, "repeats": -1}
    if minutes is None:
        wanted["schedule_type"] = Schedule.DAILY
    else:
        wanted.update(schedule_type=Schedule.MINUTES, minutes=minutes)
    schedule, created = Schedule.objects.get_or_create(name=name, defaults=wanted)
    if not created and any(getattr(schedule, k) != v for k, v in wanted.items()):
        for key, value in wanted.items():
            setattr(schedule, key, value)
        schedule.save()
