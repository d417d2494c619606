"""E-mails to people: a batch ended or paused, or one of their endpoints was disabled.

Sent through Django's e-mail framework (EMAIL_URL; the console backend when it is unset)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail

from batches.notifications.models import Event, WebhookEndpoint

TITLES = {
    "batch.completed": "completed",
    "batch.completed_with_errors": "completed with errors",
    "batch.failed": "failed",
    "batch.cancelled": "was cancelled",
    "batch.paused": "is paused",
}


def send_event_email(event: Event, payload: dict) -> None:
    batch = payload.get("batch") or {}
    name = batch.get("name") or f"Batch {event.batch_id}"
    subject = f"[Batchsite] {name} {TITLES.get(event.type, event.type)}"
    counts = batch.get("counts") or {}
    lines = [f"Your batch \"{name}\" {TITLES.get(event.type, event.type)}."]
    if payload.get("reason_text"):
        lines.append(f"Reason: {payload['reason_text']}.")
    if counts:
        lines.append("Rows: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n))
    if batch.get("last_error"):
        lines.append(f"Last error: {batch['last_error'][:500]}")
    links = payload.get("links") or {}
    if links:
        lines += ["", f"See it: {links['page']}",
                  f"Download the results: {links['exports']['csv']}"]
    lines += ["", "You get this e-mail because notifications by e-mail are on; turn them off at "
              + settings.SITE_URL.rstrip("/") + "/notifications/"]
    send_mail(subject, "\n".join(lines), None, [event.owner.email])


def send_endpoint_disabled_email(endpoint: WebhookEndpoint) -> None:
    if not endpoint.owner.email:
        return
    send_mail(
        "[Batchsite] A webhook endpoint was disabled",
        f"Deliveries to {endpoint.url} have failed since {endpoint.failing_since:%Y-%m-%d %H:%M} "
        "UTC, so the endpoint was disabled. Fix the receiver, then turn the endpoint back on at "
        f"{settings.SITE_URL.rstrip('/')}/notifications/ and redeliver what it missed.",
        None, [endpoint.owner.email])
