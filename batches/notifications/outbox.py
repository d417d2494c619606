"""Recording events: called by the engine and the services inside the transaction that changes
the batch, so the event commits or rolls back with the change (the outbox)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from batches.models import Batch, BatchResult
from batches.notifications.models import Event, EventType, PauseReason, WebhookEndpoint


def record_batch_event(batch_id: int, event_type: str, *, reason: str = "") -> Event | None:
    """Record the event of a state change the caller has just written (same transaction)."""
    batch = Batch.objects.only("id", "owner_id", "webhook_url").get(pk=batch_id)
    return Event.objects.record(batch, event_type, reason=reason)


def pause_reason(message: str) -> str:
    """Why the engine paused a batch, from the message it wrote on it."""
    return PauseReason.BUDGET if "budget" in message.lower() else PauseReason.DAILY_QUOTA


def record_waiting_on_api(now=None) -> list[Event]:
    """One batch.waiting_on_api per wait that has lasted WEBHOOK_WAITING_AFTER_S (run by the
    sweep; the key makes a second sweep, or a second cluster, record nothing)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.WEBHOOK_WAITING_AFTER_S)
    recorded = []
    waiting = Batch.objects.filter(status__in=Batch.ACTIVE_STATUSES,
                                   api_waiting_since__lte=since)
    for batch in waiting.only("id", "owner_id", "webhook_url", "api_waiting_since"):
        key = f"waiting:{batch.pk}:{batch.api_waiting_since.timestamp():.6f}"
        try:
            event = Event.objects.record(batch, EventType.WAITING_ON_API, key=key)
        except IntegrityError:
            continue  # another sweep recorded it first
        if event is not None:
            recorded.append(event)
    return recorded


def record_progress(now=None) -> list[Event]:
    """batch.progress each time a running batch passes another WEBHOOK_PROGRESS_STEP_PERCENT,
    for owners with an endpoint that asked for it (run by the sweep, off the engine's path)."""
    step = settings.WEBHOOK_PROGRESS_STEP_PERCENT
    if not step:
        return []
    owners = {owner for owner, events in WebhookEndpoint.objects.filter(active=True)
              .values_list("owner_id", "events") if EventType.PROGRESS in events}
    recorded = []
    running = Batch.objects.filter(status=Batch.Status.RUNNING, owner_id__in=owners)
    for batch in running.only("id", "owner_id", "webhook_url"):
        rows = BatchResult.objects.filter(batch_id=batch.pk)
        total = rows.count()
        done = rows.filter(status__in=["succeeded", "failed", "cancelled"]).count()
        reached = int(100 * done / total // step * step) if total else 0
        if reached <= 0 or reached >= 100:
            continue  # 100 % is the batch's final event
        try:
            event = Event.objects.record(batch, EventType.PROGRESS, reason=f"{reached}%",
                                         key=f"progress:{batch.pk}:{reached}")
        except IntegrityError:
            continue
        if event is not None:
            recorded.append(event)
    return recorded
