"""What an event says: its id, type and time, and the batch as the API's detail view shows it,
with links to the batch page, its results and its exports.

Built by the first delivery attempt and frozen on the event, so every retry and every
destination gets the same body (and the same event id to deduplicate on)."""

from __future__ import annotations

import json

from django.conf import settings
from django.urls import reverse
from rest_framework.renderers import JSONRenderer

from batches.api.serializers import BatchSerializer
from batches.api.views import live_figures
from batches.exports import FORMATS
from batches.models import Batch
from batches.notifications.models import Event, EventType, PauseReason


def absolute(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def batch_links(batch_id: int) -> dict:
    api = reverse("api:batch-detail", args=[batch_id])
    return {
        "page": absolute(reverse("batch_detail", args=[batch_id])),
        "api": absolute(api),
        "results": absolute(reverse("api:batch-results", args=[batch_id])),
        "exports": {fmt: absolute(reverse("api:batch-export", args=[batch_id]) + f"?format={fmt}")
                    for fmt in FORMATS},
    }


def build(event: Event) -> dict:
    payload: dict = {"id": str(event.id), "type": event.type,
                     "created_at": event.created_at.isoformat().replace("+00:00", "Z")}
    if event.type == EventType.TEST:
        payload["message"] = "A test event from Batchsite: your endpoint is reachable."
        return payload
    if event.type == EventType.PROGRESS:
        payload["percent"] = int(event.reason.rstrip("%"))
    elif event.reason:
        payload["reason"] = event.reason
        payload["reason_text"] = _reason_text(event.reason)
    batch = Batch.objects.select_related("owner").filter(pk=event.batch_id).first()
    if batch is None:
        payload["batch"] = None
        return payload
    batch.live = live_figures(batch)
    payload["batch"] = json.loads(JSONRenderer().render(BatchSerializer(batch).data))
    payload["links"] = batch_links(batch.pk)
    return payload


def frozen(event: Event) -> dict:
    """The event's payload, built and stored by whichever attempt comes first."""
    if event.payload is None:
        Event.objects.filter(pk=event.pk, payload__isnull=True).update(payload=build(event))
        event.refresh_from_db(fields=["payload"])
    return event.payload


def body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _reason_text(reason: str) -> str:
    try:
        return PauseReason(reason).label
    except ValueError:
        return reason
