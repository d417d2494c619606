"""The Limiter: the rate limiter and circuit breaker of batches.limits over one backend, with
this process's local view (latest backoff, breaker state) that keeps most calls free of I/O."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batches.limits import state as rules
from batches.limits.backends import Backend

RunDb = Callable[[Callable[[], Any]], Awaitable[Any]]

log = logging.getLogger("batches.limits")

BACKOFF_DEFAULT_S = 2.0
BACKOFF_MAX_S = 10.0
BREAKER_MAX_COOLDOWN_S = 60.0
REFRESH_S = 1.0  # how stale a process's view of the shared breaker and backoff may get
WARN_EVERY_S = 10.0


@dataclass
class _Known:
    breaker: rules.Breaker
    checked_at: float


class Limiter:
    """The limiter and breaker over one backend. One per process (get_limiter); tests make
    their own with a fake clock and sleep."""

    def __init__(self, backend: Backend, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 threshold: int = 5, cooldown: float = 10.0,
                 max_cooldown: float = BREAKER_MAX_COOLDOWN_S, min_failing: float = 0.0) -> None:
        self.backend = backend
        self.clock = clock
        self.sleep = sleep
        self.threshold = threshold
        self.min_failing = min_failing
        self.cooldown = cooldown
        self.max_cooldown = max(max_cooldown, cooldown)
        self._mutex = threading.Lock()
        self._blocked: dict[str, float] = {}
        self._known: dict[str, _Known] = {}
        self._loop_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._warned_at = float("-inf")

    # Rate limits, sync: each call is at most one round-trip.

    def try_acquire(self, model: str, *, rpm: int | None, tpm: int | None, tokens: int = 0,
                    n: int = 1) -> tuple[int, float]:
        """Take up to n permits now: (granted, 0.0), or (0, seconds to wait before asking)."""
        wait = self._local_block(model)
        if wait > 0:
            return 0, wait
        if not rpm and not (tpm and tokens > 0):
            return n, 0.0
        limits = {}
        if rpm:
            limits[f"rpm:{model}"] = (rpm, 1.0)
        if tpm and tokens > 0:
            limits[f"tpm:{model}"] = (tpm, float(tokens))
        block_key = f"block:{model}"

        def fn(states, now):
            buckets = [(states[key], limit, cost) for key, (limit, cost) in limits.items()]
            granted, wait = rules.take(buckets, states[block_key], n, now)
            return granted, wait, states[block_key].blocked_until

        granted, wait, blocked_until = self.backend.transact([block_key, *limits], fn, self.clock)
        self._note_block(model, blocked_until)
        return granted, wait

    def settle_sync(self, model: str, *, tpm: int | None, delta: float) -> None:
        """Correct the TPM bucket by `delta` tokens (actual - estimated)."""
        if not tpm or not delta:
            return
        key = f"tpm:{model}"
        self.backend.transact([key], lambda s, now: rules.adjust(s[key], tpm, delta, now),
                              self.clock)

    def backoff_sync(self, model: str, seconds: float | None) -> float:
        """Block the model's whole budget after a 429; returns the unix time it ends."""
        seconds = min(seconds if seconds and seconds > 0 else BACKOFF_DEFAULT_S, BACKOFF_MAX_S)
        key = f"block:{model}"

        def fn(states, now):
            rules.block_until(states[key], now + seconds)
            return states[key].blocked_until

        until = self.backend.transact([key], fn, self.clock)
        self._note_block(model, until)
        return until

    # Circuit breaker, sync.

    def record_failure_sync(self, model: str) -> bool:
        """Count a transient failure; True when the circuit is open."""
        key = f"breaker:{model}"
        fn = functools.partial(self._fail, key)
        breaker, now = self.backend.transact([key], fn, self.clock)
        self._note_breaker(model, breaker, now)
        return breaker.is_open

    def record_success_sync(self, model: str) -> None:
        """Close the circuit and reset the failure count; no I/O when there is nothing to reset."""
        known = self._known_now(model)
        if not known.breaker.failures and not known.breaker.is_open:
            return
        key = f"breaker:{model}"
        breaker, now = self.backend.transact(
            [key], lambda s, now: (rules.breaker_success(s[key]), now), self.clock)
        self._note_breaker(model, breaker, now)

    def allow_sync(self, model: str) -> tuple[bool, float]:
        """(True, 0): send one request. (False, wait): the circuit is open; ask again later."""
        decision = self._allow_local(model)
        if decision is not None:
            return decision
        self._refresh(model)
        decision = self._allow_local(model)
        if decision is not None:
            return decision
        key = f"breaker:{model}"
        allowed, breaker, now = self.backend.transact(
            [key], lambda s, now: (*rules.breaker_allow(s[key], now), now), self.clock)
        self._note_breaker(model, breaker, now)
        return (True, 0.0) if allowed else (False, max(0.0, breaker.next_probe_at - now))

    def open_since(self, model: str) -> datetime | None:
        """When this process last saw the model's circuit open, or None if closed. No I/O."""
        with self._mutex:
            known = self._known.get(model)
        if known is None or known.breaker.opened_at is None:
            return None
        return datetime.fromtimestamp(known.breaker.opened_at, tz=UTC)

    # Async: for the engine's event loop.

    async def acquire(self, model: str, *, rpm: int | None, tpm: int | None, tokens: int = 0,
                      n: int = 1, run_db: RunDb | None = None) -> int:
        """Wait until at least one of `n` requests may be sent; return how many may (1..n)."""
        if not rpm and not (tpm and tokens > 0):
            while (wait := self._local_block(model)) > 0:
                await self.sleep(wait)
            return n
        # One coroutine per loop and model talks to the backend; the rest queue here instead
        # of each polling the shared state.
        async with self._loop_lock(model, "acquire"):
            outage = 0
            while True:
                try:
                    granted, wait = await self._run(run_db, functools.partial(
                        self.try_acquire, model, rpm=rpm, tpm=tpm, tokens=tokens, n=n))
                    outage = 0
                except backend_errors() as exc:
                    # The shared state is unreachable (a database restart): wait for it rather
                    # than send unbudgeted requests or fail the row.
                    outage += 1
                    granted, wait = 0, min(0.25 * 2 ** outage, 5.0)
                    self._warn("Rate limiter unreachable, waiting: %s", exc)
                if granted:
                    return granted
                # Jitter keeps processes that were told the same wait from arriving together.
                await self.sleep(wait * (1 + random.uniform(0, 0.1)))

    # The calls below are best effort: when the shared state is unreachable they log, answer
    # from this process's view, and let the request go on.

    async def settle(self, model: str, *, tpm: int | None, delta: float,
                     run_db: RunDb | None = None) -> None:
        if tpm and delta:
            await self._try(run_db, functools.partial(self.settle_sync, model, tpm=tpm,
                                                      delta=delta), None, model)

    async def backoff(self, model: str, seconds: float | None, *,
                      run_db: RunDb | None = None) -> None:
        seconds = min(seconds if seconds and seconds > 0 else BACKOFF_DEFAULT_S, BACKOFF_MAX_S)
        self._note_block(model, self.clock() + seconds)  # this process stops even if I/O fails
        await self._try(run_db, functools.partial(self.backoff_sync, model, seconds), None,
                        model)

    async def record_failure(self, model: str, *, run_db: RunDb | None = None) -> bool:
        with self._mutex:
            known = self._known.get(model)
        fallback = known is not None and known.breaker.is_open
        return await self._try(run_db, functools.partial(self.record_failure_sync, model),
                               fallback, model)

    async def record_success(self, model: str, *, run_db: RunDb | None = None) -> None:
        if self._known_clean(model):
            return
        async with self._loop_lock(model, "breaker"):
            if self._known_clean(model):  # another coroutine has just refreshed or reset
                return
            await self._try(run_db, functools.partial(self.record_success_sync, model), None,
                            model)

    async def allow(self, model: str, *, run_db: RunDb | None = None) -> bool:
        return (await self._allow(model, run_db))[0]

    async def wait_until_allowed(self, model: str, *, run_db: RunDb | None = None,
                                 timeout: float | None = None) -> bool:
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            allowed, wait = await self._allow(model, run_db)
            if allowed:
                return True
            wait = min(wait, REFRESH_S)
            if deadline is not None:
                if self.clock() >= deadline:
                    return False
                wait = min(wait, max(0.0, deadline - self.clock()))
            await self.sleep(wait * (1 + random.uniform(0, 0.1)))

    async def _allow(self, model: str, run_db: RunDb | None) -> tuple[bool, float]:
        decision = self._allow_local(model)
        if decision is not None:
            return decision
        async with self._loop_lock(model, "breaker"):
            decision = self._allow_local(model)  # another coroutine may have just refreshed
            if decision is not None:
                return decision
            with self._mutex:
                known = self._known.get(model)
            fallback = (False, REFRESH_S) if known and known.breaker.is_open else (True, 0.0)
            return await self._try(run_db, functools.partial(self.allow_sync, model), fallback,
                                   model)

    # Local view.

    def _fail(self, key: str, states, now):
        return rules.breaker_failure(states[key], now, threshold=self.threshold,
                                     cooldown=self.cooldown, max_cooldown=self.max_cooldown,
                                     min_failing=self.min_failing), now

    def _local_block(self, model: str) -> float:
        with self._mutex:
            until = self._blocked.get(model, 0.0)
        return max(0.0, until - self.clock()) if until else 0.0

    def _note_block(self, model: str, until: float) -> None:
        with self._mutex:
            self._blocked[model] = max(self._blocked.get(model, 0.0), until)

    def _note_breaker(self, model: str, breaker: rules.Breaker, now: float) -> None:
        with self._mutex:
            self._known[model] = _Known(breaker, now)

    def _known_fresh(self, model: str) -> _Known | None:
        with self._mutex:
            known = self._known.get(model)
        if known is None or self.clock() - known.checked_at >= REFRESH_S:
            return None
        return known

    def _known_clean(self, model: str) -> bool:
        known = self._known_fresh(model)
        return bool(known) and not known.breaker.failures and not known.breaker.is_open

    def _known_now(self, model: str) -> _Known:
        known = self._known_fresh(model)
        if known is None:
            self._refresh(model)
            with self._mutex:
                known = self._known[model]
        return known

    def _refresh(self, model: str) -> None:
        """Read the shared breaker and backoff (no lock): at most once a second per process."""
        breaker_key, block_key = f"breaker:{model}", f"block:{model}"
        states = self.backend.read([breaker_key, block_key])
        now = self.clock()
        self._note_breaker(model, rules.breaker_view(states[breaker_key]), now)
        self._note_block(model, states[block_key].blocked_until)

    def _allow_local(self, model: str) -> tuple[bool, float] | None:
        """The answer from this process's fresh view, or None when a round-trip is needed."""
        known = self._known_fresh(model)
        if known is None:
            return None
        if not known.breaker.is_open:
            return True, 0.0
        wait = known.breaker.next_probe_at - self.clock()
        return (False, wait) if wait > rules.EPSILON else None

    def _loop_lock(self, model: str, purpose: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._mutex:
            locks = self._loop_locks.setdefault(loop, {})
            return locks.setdefault((model, purpose), asyncio.Lock())

    async def _run(self, run_db: RunDb | None, fn: Callable[[], Any]) -> Any:
        if self.backend.uses_db and run_db is not None:
            return await run_db(fn)
        if self.backend.uses_db:
            fn = functools.partial(_closing_broken_connection, fn)
        return await asyncio.to_thread(fn)

    async def _try(self, run_db: RunDb | None, fn: Callable[[], Any], fallback: Any,
                   model: str) -> Any:
        try:
            return await self._run(run_db, fn)
        except backend_errors() as exc:
            self._warn("Rate limiter unreachable, carrying on: %s", exc)
            # Keep the view we have for another REFRESH_S instead of retrying on every call.
            with self._mutex:
                known = self._known.get(model)
                breaker = known.breaker if known else rules.Breaker(0, None, 0.0)
                self._known[model] = _Known(breaker, self.clock())
            return fallback

    def _warn(self, message: str, exc: Exception) -> None:
        now = self.clock()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(message, exc)


@functools.cache
def backend_errors() -> tuple[type[Exception], ...]:
    """What a backend raises when its database or Redis is unreachable."""
    from django.db import Error as DatabaseError
    from redis.exceptions import RedisError

    return DatabaseError, RedisError


def _closing_broken_connection(fn: Callable[[], Any]) -> Any:
    from django.db import Error as DatabaseError
    from django.db import connection

    try:
        return fn()
    except DatabaseError:
        connection.close()  # reopened by this thread's next call
        raise
