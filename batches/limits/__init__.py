"""Shared rate limiter and per-model circuit breaker for calls to the model API.

Layers, lowest first: state (pure token-bucket and breaker rules), backends (database or
Redis storage), limiter (the Limiter class), process (this process's limiter and the calls
below). It may import models (the database backend) and nothing above them: never the
engine, services or the web.

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
limit of whoever is asking. Grants in any 60 s window never exceed the limit (state.py).

Circuit breaker: BREAKER_THRESHOLD (10) transient failures in a row, from any process, open the
model's circuit for BREAKER_COOLDOWN_S (10 s); then one probe per cool-down goes through, the
cool-down doubling (to 60 s) while probes fail; any success closes it. Each process keeps a
local view refreshed at most once a second, so allow()/record_success() are usually free.
"""

from batches.limits.process import (
    BACKOFF_DEFAULT_S,
    BACKOFF_MAX_S,
    REFRESH_S,
    Limiter,
    acquire,
    allow,
    backoff,
    estimate_tokens,
    get_limiter,
    open_since,
    record_failure,
    record_success,
    set_limiter,
    settle,
    wait_until_allowed,
)

__all__ = [
    "BACKOFF_DEFAULT_S",
    "BACKOFF_MAX_S",
    "REFRESH_S",
    "Limiter",
    "acquire",
    "allow",
    "backoff",
    "estimate_tokens",
    "get_limiter",
    "open_since",
    "record_failure",
    "record_success",
    "set_limiter",
    "settle",
    "wait_until_allowed",
]
