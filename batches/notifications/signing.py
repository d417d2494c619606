"""Webhook signatures: HMAC-SHA256 over `timestamp.body`, hex, in the Batchsite-Signature header.

The receiver's side (docs/notifications.md shows it in Python and Node) recomputes the same and
compares in constant time, and rejects timestamps too far from its clock (replays)."""

from __future__ import annotations

import hashlib
import hmac
import time

EVENT_ID_HEADER = "Batchsite-Event-Id"
EVENT_TYPE_HEADER = "Batchsite-Event"
TIMESTAMP_HEADER = "Batchsite-Timestamp"
SIGNATURE_HEADER = "Batchsite-Signature"
SCHEME = "sha256="
TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SCHEME + digest.hexdigest()


def headers(*, secret: str, event_id: str, event_type: str, body: bytes,
            timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": "Batchsite-Webhooks/1",
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: event_type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify(secret: str, *, timestamp: str, signature: str, body: bytes,
           now: float | None = None, tolerance_s: int = TOLERANCE_S) -> bool:
    """True if `signature` is ours for this body and the timestamp is recent."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - stamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature or "")
