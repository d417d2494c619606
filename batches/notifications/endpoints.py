"""Write actions on notifications shared by the page, the API and the admin: endpoints,
secrets, test events, redelivery and the per-user settings."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batches.notifications import models as outbox_models
from batches.notifications.models import (
    BATCH_EVENTS,
    Delivery,
    Event,
    EventType,
    NotificationSettings,
    WebhookEndpoint,
    new_secret,
)
from batches.notifications.safety import UnsafeURL, check_url
from batches.services import ActionNotAllowed, InvalidInput, LimitReached


def _clean(url: str | None, events: list[str] | None) -> dict:
    changes: dict = {}
    if url is not None:
        try:
            changes["url"] = check_url(url)
        except UnsafeURL as err:
            raise InvalidInput(str(err), field="url") from err
    if events is not None:
        unknown = [e for e in events if e not in BATCH_EVENTS]
        if unknown:
            raise InvalidInput(f"Unknown event {unknown[0]!r}; use any of "
                               f"{', '.join(BATCH_EVENTS)}.", field="events")
        changes["events"] = list(dict.fromkeys(events))
    return changes


def endpoint_create(*, owner, url: str, events: list[str] | None = None,
                    description: str = "", active: bool = True) -> WebhookEndpoint:
    """Register an endpoint; its `secret` is readable now and shown once by the callers."""
    changes = _clean(url, events or [])
    cap = settings.WEBHOOK_MAX_ENDPOINTS
    with transaction.atomic():
        if cap and WebhookEndpoint.objects.filter(owner=owner).count() >= cap:
            raise LimitReached(f"You already have {cap} webhook endpoints (the limit); delete "
                               "one first.")
        return WebhookEndpoint.objects.create(owner=owner, description=description.strip()[:200],
                                              active=active, **changes)


def endpoint_update(*, endpoint: WebhookEndpoint, url: str | None = None,
                    events: list[str] | None = None, description: str | None = None,
                    active: bool | None = None) -> WebhookEndpoint:
    changes = _clean(url, events)
    if description is not None:
        changes["description"] = description.strip()[:200]
    if active is not None:
        changes["active"] = active
        if active:
            changes.update(failing_since=None, disabled_reason="")
    if changes:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(**changes)
        endpoint.refresh_from_db()
    return endpoint


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret, used from the next attempt on; returned to be shown once."""
    secret = new_secret()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=secret)
    endpoint.secret = secret
    return secret


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    with transaction.atomic():
        endpoint.deliveries.filter(status=Delivery.Status.PENDING).update(
            status=Delivery.Status.FAILED, last_error="The endpoint was deleted.")
        endpoint.delete()


def endpoint_send_test(*, endpoint: WebhookEndpoint) -> Delivery:
    """Send a `webhook.test` event to this endpoint alone (even when it is inactive)."""
    with transaction.atomic():
        event = Event.objects.create(owner_id=endpoint.owner_id, type=EventType.TEST)
        (delivery,) = Delivery.objects.fan_out(event, endpoint=endpoint)
    return delivery


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again now (same event id and body), with a fresh retry window."""
    if delivery.status == Delivery.Status.PENDING and delivery.attempts == 0:
        raise ActionNotAllowed("The delivery has not been attempted yet.")
    now = timezone.now()
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.PENDING, next_attempt_at=now, locked_until=None,
            give_up_at=now + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_S))
        transaction.on_commit(lambda: outbox_models.enqueue([delivery.pk]))
    delivery.refresh_from_db()
    return delivery


def settings_update(*, user, email_enabled: bool) -> NotificationSettings:
    found = NotificationSettings.of(user)
    NotificationSettings.objects.filter(pk=found.pk).update(email_enabled=email_enabled)
    found.refresh_from_db()
    return found


def default_secret_rotate(*, user) -> str:
    """A new secret for batches' own webhook_url; returned to be shown once."""
    found = NotificationSettings.of(user)
    found.default_secret = new_secret()
    found.save(update_fields=["default_secret"])
    return found.default_secret
