"""The limiter's arithmetic: pure functions on `State`, shared by every backend and the unit tests.

A `State` mirrors one `RateBucket` row (or one Redis hash). Three kinds of key per model:

- `rpm:<model>` / `tpm:<model>`: token buckets (`tokens`, `updated_at` = time of the last refill).
- `block:<model>`: `blocked_until`, set by a 429 backoff; nothing is granted before it.
- `breaker:<model>`: `failures` (consecutive transient failures), `opened_at` (None = closed),
  `blocked_until` (earliest next probe), `tokens` (current cool-down, seconds) and `updated_at`
  (when the outstanding probe was granted, 0 = none).

Bucket shape: capacity C = max(1, limit x BURST_SECONDS / 60) and refill rate r = (limit - C) / 60
per second (at least limit / 2 / 60 for tiny limits). Whatever the timing, the permits granted in
any 60 s window number at most C + 60 r <= limit, which is what the server counts; the sustained
rate is limit - C per minute (98.3 % of 1,200/min with one second of burst).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

BURST_SECONDS = 1.0
EPSILON = 1e-9


@dataclass
class State:
    key: str
    tokens: float = 0.0
    updated_at: float = 0.0
    blocked_until: float = 0.0
    failures: int = 0
    opened_at: float | None = None

    def copy(self) -> State:
        return dataclasses.replace(self)


@dataclass(frozen=True)
class Breaker:
    """What one process knows about a model's circuit after a round-trip."""

    failures: int
    opened_at: float | None
    next_probe_at: float

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


def capacity(limit: int) -> float:
    return max(1.0, limit * BURST_SECONDS / 60.0)


def refill_rate(limit: int) -> float:
    """Permits (or tokens) per second."""
    return max(limit - capacity(limit), limit / 2.0) / 60.0


def refilled(state: State, limit: int, now: float) -> float:
    """The bucket's level at `now`; a new bucket (updated_at 0) starts full."""
    cap = capacity(limit)
    if state.updated_at <= 0:
        return cap
    # A clock behind the last writer's (skew between hosts) refills nothing rather than draining.
    elapsed = max(0.0, now - state.updated_at)
    return min(cap, state.tokens + elapsed * refill_rate(limit))


def take(buckets: list[tuple[State, int, float]], block: State, n: int,
         now: float) -> tuple[int, float]:
    """Grant up to `n` permits from every bucket at once, or none.

    `buckets` holds (state, limit, cost per permit). Returns (granted, seconds to wait before
    asking again); the states change only when something is granted. A permit costing more than
    the bucket's capacity is granted once the bucket is full and leaves it in debt, so an
    oversized request waits its turn instead of waiting forever.
    """
    if block.blocked_until > now:
        return 0, block.blocked_until - now
    granted, wait, levels = n, 0.0, []
    for state, limit, cost in buckets:
        level = refilled(state, limit, now)
        levels.append(level)
        need = min(cost, capacity(limit))
        if level + EPSILON < need:
            granted = 0
            wait = max(wait, (need - level) / refill_rate(limit))
        elif cost > 0:
            granted = min(granted, max(1, math.floor((level + EPSILON) / cost)))
    if granted <= 0:
        return 0, wait
    for (state, _limit, cost), level in zip(buckets, levels, strict=True):
        state.tokens = level - granted * cost
        state.updated_at = max(state.updated_at, now)
    return granted, 0.0


def adjust(state: State, limit: int, delta: float, now: float) -> None:
    """Charge `delta` more tokens (negative: refund) after the fact; debt is capped at a minute."""
    level = refilled(state, limit, now)
    state.tokens = min(capacity(limit), max(-float(limit), level - delta))
    state.updated_at = max(state.updated_at, now)


def block_until(state: State, until: float) -> None:
    state.blocked_until = max(state.blocked_until, until)


def breaker_view(state: State) -> Breaker:
    return Breaker(state.failures, state.opened_at, state.blocked_until)


def breaker_failure(state: State, now: float, *, threshold: int, cooldown: float,
                    max_cooldown: float, min_failing: float = 0.0) -> Breaker:
    """Count a transient failure; open the circuit at `threshold` in a row that have gone on for
    at least `min_failing` seconds.

    The duration keeps a storm of random errors from opening it: an outage fails everything for
    seconds, while under a storm some success resets the run well within them, even when other
    processes learn of it late. While closed, `blocked_until` holds when the run began.

    A failure while open doubles the cool-down only when a probe is outstanding, so the late
    failures of requests sent before the circuit opened do not stretch the wait.
    """
    state.failures += 1
    if state.opened_at is None:
        if state.failures == 1 or not state.blocked_until:
            state.blocked_until = now
        if state.failures >= threshold and now - state.blocked_until >= min_failing:
            state.opened_at = now
            state.tokens = cooldown
            state.blocked_until = now + cooldown
            state.updated_at = 0.0
    elif state.updated_at > 0:
        state.tokens = min(max(state.tokens, cooldown) * 2, max_cooldown)
        state.blocked_until = now + state.tokens
        state.updated_at = 0.0
    return breaker_view(state)


def breaker_success(state: State) -> Breaker:
    state.failures = 0
    state.opened_at = None
    state.blocked_until = 0.0
    state.tokens = 0.0
    state.updated_at = 0.0
    return breaker_view(state)


def breaker_allow(state: State, now: float) -> tuple[bool, Breaker]:
    """Closed: allowed. Open: one probe per cool-down is allowed, everyone else waits."""
    if state.opened_at is None:
        return True, breaker_view(state)
    if now + EPSILON < state.blocked_until:
        return False, breaker_view(state)
    state.updated_at = now
    state.blocked_until = now + max(state.tokens, EPSILON)
    return True, breaker_view(state)
