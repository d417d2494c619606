"""Shared rate limiter and per-model circuit breaker for calls to the model API.

Interface for the engine (asyncio slices; every ORM call on the slice's one DB thread). Every
async function takes `run_db`: an awaitable runner, `await run_db(fn)` runs the zero-argument
callable `fn` on that DB thread and returns its result. It is used only for the database
backend; with Redis (settings.REDIS_URL set) the round-trip runs in a worker thread. None means
`asyncio.to_thread` for both. No call holds a transaction while it waits: each round-trip is
one short transaction, and waits are `asyncio.sleep`s computed from the shared state.

    from batches import limits

    # Before each request (or each group of n requests ready to go):
    await limits.wait_until_allowed(model, run_db=run_db)  # circuit breaker (see below)
    got = await limits.acquire(model, rpm=batch.rpm_limit, tpm=batch.tpm_limit,
                               tokens=estimated_prompt_tokens, n=1, run_db=run_db)
    # -> int, 1 <= got <= n: send `got` requests now. Returns once the budget allows it.
    #    rpm/tpm None (or 0) = unlimited: returns n at once with no I/O (only a local 429
    #    backoff of this process can make it sleep). `tokens` is the estimated tokens per
    #    request (see estimate_tokens); ignored when tpm is None.
    # After each answer:
    await limits.settle(model, tpm=batch.tpm_limit, delta=actual - estimated, run_db=run_db)
    #    optional TPM correction; sum several answers' deltas into one call if you like.
    # On a 429 (RetryableError.status == 429):
    await limits.backoff(model, error.retry_after, run_db=run_db)
    #    blocks every caller of the model, in every process, for min(retry_after or 2 s, 10 s).
    #    A 429 is neither a failure nor a success for the circuit breaker.
    # On a transient error (5xx, timeout, connection refused):
    is_open = await limits.record_failure(model, run_db=run_db)  # -> bool
    #    True: the circuit is open (now or already): put the row back to pending WITHOUT
    #    spending its retry budget, and set Batch.api_waiting_since from open_since().
    # On any other answer (success, or a permanent 4xx error: the API is up):
    await limits.record_success(model, run_db=run_db)  # closes the circuit; usually no I/O
    # Circuit breaker:
    ok = await limits.allow(model, run_db=run_db)  # -> bool, never waits
    #    True: closed, or this caller holds the one probe of this cool-down (send exactly one
    #    request and report it with record_success/record_failure). False: open, wait.
    ok = await limits.wait_until_allowed(model, run_db=run_db, timeout=None)  # -> bool
    #    sleeps (polling the shared state at most once a second per process) until allow()
    #    says yes; False if `timeout` seconds passed first.
    since = limits.open_since(model)  # -> aware datetime | None; no I/O, this process's view
    limits.estimate_tokens(text)      # -> int, about 4 characters per token

Sync versions for code without an event loop: `limits.get_limiter()` returns this process's
`Limiter`, whose `try_acquire(...) -> (granted, wait_seconds)`, `settle_sync`, `backoff_sync`,
`record_failure_sync`, `record_success_sync`, `allow_sync` each do one or two short round-trips.

When the database or Redis is unreachable, acquire() keeps waiting (0.5 s doubling to 5 s) and
the other calls log a warning and answer from this process's view, so a database restart
neither fails rows nor lets unbudgeted requests out. A `run_db` that runs on a long-lived thread
should close that thread's connection after a database error (the engine's does).

Rate limits: one budget per model shared by every batch, slice and host: token buckets
`rpm:<model>` (1 per request) and `tpm:<model>` (estimated tokens per request), refilled at the
rate the calling batch passes, so batches with different limits on one model are held to the
limit of whoever is asking. Grants in any 60 s window never exceed the limit (limits_state.py).

Circuit breaker: BREAKER_THRESHOLD (10) transient failures in a row, from any process, open the
model's circuit for BREAKER_COOLDOWN_S (10 s); then one probe per cool-down goes through, the
cool-down doubling (to 60 s) while probes fail; any success closes it. Each process keeps a
local view refreshed at most once a second, so allow()/record_success() are usually free.
"""

from __future__ import annotations

import threading
from datetime import datetime

from batches.limits_backends import DatabaseBackend, RedisBackend
from batches.limits_limiter import (
    BACKOFF_DEFAULT_S,
    BACKOFF_MAX_S,
    REFRESH_S,
    Limiter,
    RunDb,
)

__all__ = [
    "BACKOFF_DEFAULT_S", "BACKOFF_MAX_S", "REFRESH_S", "Limiter", "acquire", "allow", "backoff",
    "estimate_tokens", "get_limiter", "open_since", "record_failure", "record_success",
    "set_limiter", "settle", "wait_until_allowed",
]


def estimate_tokens(text: str) -> int:
    """Rough prompt size for the TPM budget: about four characters per token."""
    return max(1, len(text) // 4)


_limiter: Limiter | None = None
_limiter_mutex = threading.Lock()


def get_limiter() -> Limiter:
    """This process's limiter: Redis when settings.REDIS_URL is set, the database otherwise."""
    global _limiter
    with _limiter_mutex:
        if _limiter is None:
            from django.conf import settings

            backend = (RedisBackend(settings.REDIS_URL) if settings.REDIS_URL
                       else DatabaseBackend())
            _limiter = Limiter(backend, threshold=getattr(settings, "BREAKER_THRESHOLD", 10),
                               cooldown=getattr(settings, "BREAKER_COOLDOWN_S", 10.0),
                               min_failing=getattr(settings, "BREAKER_MIN_FAILING_S", 2.0))
        return _limiter


def set_limiter(limiter: Limiter | None) -> None:
    """Replace this process's limiter (tests); None rebuilds it from settings on next use."""
    global _limiter
    with _limiter_mutex:
        _limiter = limiter


async def acquire(model: str, *, rpm: int | None, tpm: int | None, tokens: int = 0, n: int = 1,
                  run_db: RunDb | None = None) -> int:
    return await get_limiter().acquire(model, rpm=rpm, tpm=tpm, tokens=tokens, n=n,
                                       run_db=run_db)


async def settle(model: str, *, tpm: int | None, delta: float,
                 run_db: RunDb | None = None) -> None:
    await get_limiter().settle(model, tpm=tpm, delta=delta, run_db=run_db)


async def backoff(model: str, seconds: float | None, *, run_db: RunDb | None = None) -> None:
    await get_limiter().backoff(model, seconds, run_db=run_db)


async def record_failure(model: str, *, run_db: RunDb | None = None) -> bool:
    return await get_limiter().record_failure(model, run_db=run_db)


async def record_success(model: str, *, run_db: RunDb | None = None) -> None:
    await get_limiter().record_success(model, run_db=run_db)


async def allow(model: str, *, run_db: RunDb | None = None) -> bool:
    return await get_limiter().allow(model, run_db=run_db)


async def wait_until_allowed(model: str, *, run_db: RunDb | None = None,
                             timeout: float | None = None) -> bool:
    return await get_limiter().wait_until_allowed(model, run_db=run_db, timeout=timeout)


def open_since(model: str) -> datetime | None:
    return get_limiter().open_since(model)
