"""Per-user throttle on batch creation."""

from __future__ import annotations

import math
import time

from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'60/hour' -> (60, 3600)."""
    count, period = rate.split("/")
    return int(count), DURATIONS[period.strip()[0].lower()]


class BatchCreateThrottle(BaseThrottle):
    """A fixed-window counter per user in the cache.

    DRF's own throttles read, append and write a history list, so parallel requests can all
    pass; `cache.incr` is atomic in Redis (shared by every web process) and in the local-memory
    cache (one process), so exactly `count` requests pass per window."""

    scope = "batch_create"

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def allow_request(self, request, view) -> bool:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if not rate or not request.user.is_authenticated:
            return True
        limit, period = parse_rate(rate)
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{request.user.pk}:{period}:{window}"
        cache.add(key, 0, timeout=period + 1)
        try:
            used = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=period + 1)
            used = 1
        if used <= limit:
            return True
        self.retry_after = (window + 1) * period - now
        return False

    def wait(self) -> float | None:
        return math.ceil(self.retry_after) if self.retry_after is not None else None
