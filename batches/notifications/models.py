"""Notification tables: endpoints, the outbox of events, one delivery per destination of an
event, every attempt, and each user's settings.

An event and its deliveries are written by `Event.objects.record(...)` inside the transaction
that changes the batch, so a rolled-back change leaves no event and a committed one always has
its deliveries. This module imports only Django: batches/models.py imports it (for the app's
model registry) and calls `record` from `Batch.finalise_if_done`.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

DELIVER_TASK = "batches.notifications.tasks.deliver"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class EventType(models.TextChoices):
    COMPLETED = "batch.completed"
    COMPLETED_WITH_ERRORS = "batch.completed_with_errors"
    FAILED = "batch.failed"
    CANCELLED = "batch.cancelled"
    PAUSED = "batch.paused"
    WAITING_ON_API = "batch.waiting_on_api"
    PROGRESS = "batch.progress"
    TEST = "webhook.test"


BATCH_EVENTS = [t for t in EventType.values if t != EventType.TEST]
# Sent only to endpoints that ask for them by name (an empty list means the others).
OPT_IN_EVENTS = [EventType.PROGRESS]
# The status a batch's final state change writes, as the event it records.
FINAL_EVENTS = {
    "completed": EventType.COMPLETED,
    "completed_with_errors": EventType.COMPLETED_WITH_ERRORS,
    "failed": EventType.FAILED,
    "cancelled": EventType.CANCELLED,
}
# People are e-mailed when a batch ends or pauses, not for the API waits an integration follows.
EMAIL_EVENTS = [*FINAL_EVENTS.values(), EventType.PAUSED]


class PauseReason(models.TextChoices):
    USER = "user", "paused by a user"
    DAILY_QUOTA = "daily_quota", "the model's daily quota is spent"
    BUDGET = "budget", "the batch's budget is reached"


class WebhookEndpoint(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Event types wanted; empty means every batch event.
    events = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    secret = models.CharField(max_length=100, default=new_secret)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the first failed attempt after a success; an endpoint failing long enough is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        if event_type in OPT_IN_EVENTS:
            return event_type in self.events
        return not self.events or event_type in self.events


class NotificationSettings(models.Model):
    """Per user: e-mail on or off, and the secret that signs batches' own webhook_url."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="notification_settings")
    email_enabled = models.BooleanField(default=True)
    default_secret = models.CharField(max_length=100, default=new_secret)

    class Meta:
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"Notification settings of user {self.user_id}"

    @classmethod
    def of(cls, user) -> NotificationSettings:
        found, _ = cls.objects.get_or_create(user=user)
        return found


class EventManager(models.Manager):
    def record(self, batch, event_type: str, *, reason: str = "", key: str | None = None,
               ) -> Event | None:
        """Write the event and one delivery per destination in the caller's transaction, and
        enqueue the deliveries once it commits. `key` makes the event unique (None: always new)."""
        with transaction.atomic():
            if key is not None and self.filter(key=key).exists():
                return None
            event = self.create(owner_id=batch.owner_id, batch=batch, type=event_type,
                                reason=reason, key=key)
            Delivery.objects.fan_out(event, batch=batch)
        return event


class Event(models.Model):
    """The outbox: one row per batch state change worth telling someone about."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="notification_events")
    batch = models.ForeignKey("batches.Batch", on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="events")
    type = models.CharField(max_length=40, choices=EventType.choices)
    reason = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # What every delivery of the event sends, frozen by the first attempt so retries match.
    payload = models.JSONField(null=True, blank=True)
    key = models.CharField(max_length=100, null=True, blank=True, unique=True)

    objects = EventManager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="event_owner_created")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryQuerySet(models.QuerySet):
    def fan_out(self, event: Event, *, batch=None, endpoint: WebhookEndpoint | None = None,
                ) -> list[Delivery]:
        now = timezone.now()
        base = dict(event=event, next_attempt_at=now,
                    give_up_at=now + timedelta(seconds=settings.WEBHOOK_RETRY_FOR_S))
        made = []
        if endpoint is not None:
            made.append(Delivery(channel=Delivery.Channel.WEBHOOK, endpoint=endpoint,
                                 url=endpoint.url, **base))
        else:
            for found in WebhookEndpoint.objects.filter(owner_id=event.owner_id, active=True):
                if found.wants(event.type):
                    made.append(Delivery(channel=Delivery.Channel.WEBHOOK, endpoint=found,
                                         url=found.url, **base))
            if batch is not None and batch.webhook_url and event.type not in OPT_IN_EVENTS:
                made.append(Delivery(channel=Delivery.Channel.WEBHOOK, url=batch.webhook_url,
                                     **base))
            if event.type in EMAIL_EVENTS and self._wants_email(event.owner_id):
                made.append(Delivery(channel=Delivery.Channel.EMAIL, **base))
        made = self.bulk_create(made)
        ids = [d.pk for d in made]
        transaction.on_commit(lambda: enqueue(ids))
        return made

    @staticmethod
    def _wants_email(owner_id: int) -> bool:
        from django.contrib.auth import get_user_model

        if not get_user_model().objects.filter(pk=owner_id).exclude(email="").exists():
            return False
        found = NotificationSettings.objects.filter(user_id=owner_id).first()
        return found is None or found.email_enabled

    def due(self, now: datetime | None = None) -> DeliveryQuerySet:
        """Pending deliveries whose time has come and that no worker holds."""
        now = now or timezone.now()
        return self.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now).filter(
            Q(locked_until__isnull=True) | Q(locked_until__lt=now))

    def claim(self, pk: int, *, lease_s: float) -> bool:
        """Take one due delivery for `lease_s` seconds; False if it is not due or held."""
        now = timezone.now()
        return bool(self.due(now).filter(pk=pk).update(
            locked_until=now + timedelta(seconds=lease_s)))


class Delivery(models.Model):
    """One event to one destination (an endpoint, a batch's webhook_url, or the owner's
    e-mail), with its own retry schedule."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.SET_NULL, null=True,
                                 blank=True, related_name="deliveries")
    url = models.URLField(max_length=2000, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    give_up_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # The sweep finds due deliveries without reading finished ones.
            models.Index(fields=["next_attempt_at"], name="delivery_pending_due",
                         condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event.type} -> {self.destination}"

    @property
    def destination(self) -> str:
        return self.url if self.channel == self.Channel.WEBHOOK else "e-mail"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    ok = models.BooleanField(default=False)
    # The first KB of the answer, or why there was none (refused, timed out, ...).
    response = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"


def enqueue(delivery_ids: list[int]) -> None:
    """Start a delivery task per id; a lost task is picked up by the sweep."""
    from django_q.tasks import async_task

    for pk in delivery_ids:
        async_task(DELIVER_TASK, pk, q_options={"task_name": f"deliver {pk}"})
