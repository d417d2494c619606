"""Notifications: signed webhooks and e-mails when a batch ends, pauses or waits on the API.

The outbox: `record_batch_event` writes the event and one delivery per destination inside the
transaction that changes the batch (the engine and the services call it); a django-q2 task per
delivery sends it, retrying with backoff, and a schedule sweeps up whatever a lost task left.
At least once, with the event id for receivers to deduplicate on.

Modules, lowest layer first (tests/test_layout.py holds the rule):
  models, safety, signing (layer 0: Django and the standard library only; batches/models.py
  imports models); outbox, sender (layer 1, beside the engine: they must not import services,
  exports, api, web, admin or cli); endpoints (layer 2, the write actions: may import services,
  never api or web); payloads, emails, delivery, tasks, admin (layer 3: a payload is the API's
  view of a batch). No module here imports web, admin or cli.

The face is lazy, like the engine's, so the engine can record events without loading the
layers above it.
"""

from batches.lib.faces import lazy_face

_FACE = {
    "EventType": "models", "PauseReason": "models", "WebhookEndpoint": "models",
    "Event": "models", "Delivery": "models", "DeliveryAttempt": "models",
    "NotificationSettings": "models", "BATCH_EVENTS": "models",
    "check_url": "safety", "UnsafeURL": "safety",
    "sign": "signing", "verify": "signing",
    "record_batch_event": "outbox", "pause_reason": "outbox",
    "endpoint_create": "endpoints", "endpoint_update": "endpoints",
    "endpoint_rotate_secret": "endpoints", "endpoint_delete": "endpoints",
    "endpoint_send_test": "endpoints", "delivery_redeliver": "endpoints",
    "settings_update": "endpoints", "default_secret_rotate": "endpoints",
    "deliver": "delivery", "sweep": "delivery", "ensure_schedules": "tasks",
}

__all__ = sorted(_FACE)

__getattr__ = lazy_face(__name__, _FACE)
