"""Delivering the outbox: one attempt per task, retries with exponential backoff until
WEBHOOK_RETRY_FOR_S after the event, then failed; and the sweep that finds due deliveries.

At least once: a delivery is claimed with a lease, sent, then marked. A worker killed after
sending and before marking leaves the lease to expire, and the sweep sends it again with the
same event id and body, which receivers deduplicate on."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from batches.notifications import emails, outbox, payloads, sender, signing
from batches.notifications import models as outbox_models
from batches.notifications.models import (
    Delivery,
    DeliveryAttempt,
    NotificationSettings,
    WebhookEndpoint,
)

log = logging.getLogger("batches.notifications")

# A claim outlives the longest attempt by this much before the sweep may send again.
LEASE_MARGIN_S = 5
SWEEP_BATCH = 500


def backoff_s(attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: base, 2 x base, 4 x base ... capped."""
    return min(settings.WEBHOOK_RETRY_BASE_S * 2 ** max(0, attempts - 1),
               settings.WEBHOOK_RETRY_MAX_S)


def deliver(delivery_id: int) -> str:
    """Make one attempt at a due delivery; nothing if it is not due or another worker holds it."""
    timeout_s = settings.WEBHOOK_TIMEOUT_S
    if not Delivery.objects.claim(delivery_id, lease_s=timeout_s + LEASE_MARGIN_S):
        return "not due, or held by another worker"
    delivery = Delivery.objects.select_related("event__owner", "endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if delivery.channel == Delivery.Channel.WEBHOOK and delivery.url and endpoint is not None \
            and not endpoint.active:
        _finish(delivery, sender.Answer(None, 0, error="The endpoint is disabled."), final=True)
        return "endpoint disabled"
    payload = payloads.frozen(delivery.event)
    if delivery.channel == Delivery.Channel.EMAIL:
        answer = _email(delivery, payload)
    else:
        answer = _post(delivery, payload, timeout_s)
    _finish(delivery, answer)
    return f"{delivery.destination}: " + ("delivered" if answer.ok else answer.error or
                                          f"HTTP {answer.status}")


def _post(delivery: Delivery, payload: dict, timeout_s: float) -> sender.Answer:
    event = delivery.event
    if delivery.endpoint is not None:
        secret = delivery.endpoint.secret
    else:
        secret = NotificationSettings.of(event.owner).default_secret
    body = payloads.body(payload)
    headers = signing.headers(secret=secret, event_id=str(event.id), event_type=event.type,
                              body=body)
    return sender.post(delivery.url, body, headers, timeout_s=timeout_s)


def _email(delivery: Delivery, payload: dict) -> sender.Answer:
    started = time.monotonic()
    try:
        emails.send_event_email(delivery.event, payload)
    except Exception as err:  # SMTP errors come in many classes; all mean "try again later"
        return sender.Answer(None, int((time.monotonic() - started) * 1000),
                             error=f"{type(err).__name__}: {err}"[:500])
    return sender.Answer(250, int((time.monotonic() - started) * 1000), body="sent")


def _finish(delivery: Delivery, answer: sender.Answer, *, final: bool = False) -> None:
    now = timezone.now()
    error = "" if answer.ok else (answer.error or f"HTTP {answer.status}")
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery, at=now, status_code=answer.status, duration_ms=answer.duration_ms,
            ok=answer.ok, response=answer.body, error=error[:500])
        mine = Delivery.objects.filter(pk=delivery.pk)
        if answer.ok:
            mine.update(status=Delivery.Status.DELIVERED, delivered_at=now, locked_until=None,
                        attempts=F("attempts") + 1, last_error="")
            if delivery.endpoint_id:
                WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
                    failing_since=None)
            return
        attempts = delivery.attempts + 1
        retry_at = now + timedelta(seconds=backoff_s(attempts))
        give_up = final or retry_at > delivery.give_up_at
        mine.update(status=Delivery.Status.FAILED if give_up else Delivery.Status.PENDING,
                    next_attempt_at=retry_at, locked_until=None, attempts=F("attempts") + 1,
                    last_error=error[:500])
    if delivery.endpoint_id and not final:
        _note_endpoint_failure(delivery.endpoint_id, now)


def _note_endpoint_failure(endpoint_id: int, now) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(
        failing_since=now)
    cutoff = now - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_S)
    disabled = WebhookEndpoint.objects.filter(pk=endpoint_id, active=True,
                                              failing_since__lte=cutoff).update(
        active=False, disabled_reason="Disabled after failing for "
        f"{settings.WEBHOOK_DISABLE_AFTER_S / 86400:g} days.")
    if disabled:
        endpoint = WebhookEndpoint.objects.select_related("owner").get(pk=endpoint_id)
        log.warning("Webhook endpoint %s disabled after failing since %s", endpoint.url,
                    endpoint.failing_since)
        try:
            emails.send_endpoint_disabled_email(endpoint)
        except Exception:
            log.exception("Could not e-mail the owner of endpoint %s", endpoint_id)


def sweep() -> tuple[int, int]:
    """Record the waiting-on-API and progress events that are due, and enqueue every due
    delivery (lost tasks, killed workers, retries). Returns (events recorded, enqueued)."""
    recorded = outbox.record_waiting_on_api() + outbox.record_progress()
    due = list(Delivery.objects.due().order_by("next_attempt_at")
               .values_list("id", flat=True)[:SWEEP_BATCH])
    outbox_models.enqueue(due)
    return len(recorded), len(due)
