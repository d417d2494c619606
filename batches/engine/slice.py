"""The engine: slices that run rows through the model concurrently (rescue: engine_rescue).

A slice is one asyncio event loop in a worker process. Every ORM call goes through one database
thread (batches.engine.db), never the loop thread. The slice keeps its window of in-flight rows
full by claiming as rows finish, buffers outcomes and writes them in bulk, renews its leases,
and stops claiming when its time budget is spent or the worker is told to stop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import Error as DatabaseError
from django.utils import timezone

from batches import limits
from batches.documents import parts as documents
from batches.engine import answers, db
from batches.engine.db import BatchEvents, ClaimedRow, Kind, Outcome
from batches.providers import (
    ConfigurationError,
    FileUnavailable,
    PermanentError,
    Response,
    RetryableError,
    catalog,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
FLUSH_ROWS = 50
REFILL_FRACTION = 0.05  # claim again once this share of the window is free
MIN_CLAIM_INTERVAL_S = 0.01
CAPPED_RECHECK_S = 0.5  # a capped window looks for more room this often
# A slice that has been alone on a batch this long takes more than its share: the other slices
# have finished or died.
ALONE_GRACE_S = 3.0
STOP_GRACE_S = 1.0  # on a stop signal, rows get this long to finish before they are given back
DEADLINE_MARGIN_S = 10.0  # finish this long before django-q2's task timeout

Enqueue = Callable[[int], Any]


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before retrying: full-jitter exponential backoff, never under the server's delay."""
    ceiling = min(settings.BATCH_RETRY_MAX_S, settings.BATCH_RETRY_BASE_S * 2 ** min(attempts, 30))
    return max(retry_after or 0.0, random.uniform(0, ceiling))


def daily_quota_message(model: str, error: RetryableError) -> str:
    return (f"The daily quota for {model} is used up ({error.quota_id}). The batch is paused; "
            "resume it once the quota has reset.")


class ApiUnavailable(Exception):
    """The model's circuit breaker is open."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class SliceReport:
    claimed: int = 0
    written: int = 0
    released: int = 0
    batches: set[int] = field(default_factory=set)
    continued: bool = False
    stop_signal: int | None = None


class Slice:
    def __init__(self, batch_id: int | None = None, *, budget_s: float | None = None,
                 enqueue: Enqueue | None = None) -> None:
        self.batch_id = batch_id
        self.budget_s = settings.BATCH_SLICE_SECONDS if budget_s is None else budget_s
        self.max_inflight = max(1, settings.BATCH_SLICE_MAX_INFLIGHT)
        self.lease_s = settings.BATCH_LEASE_SECONDS
        cluster_timeout = settings.Q_CLUSTER.get("timeout") or 0
        self.hard_limit_s = max(self.budget_s + 5, cluster_timeout - DEADLINE_MARGIN_S)
        self.enqueue = enqueue
        self.report = SliceReport()
        self.inflight: dict[int, tuple[ClaimedRow, asyncio.Task]] = {}
        self.buffer: list[Outcome] = []
        self.events = BatchEvents()
        self.window = self.max_inflight
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._stop_signal: int | None = None
        self._claim_after = 0.0
        self._alone_since: dict[int, float] = {}
        self._last_claim = -math.inf
        self._deadline = math.inf
        # Slot idle time: from a row's answer to the request that takes its slot (the refill
        # gap the latency-bound benchmark measures; see docs/performance.md).
        self._freed_at: deque[float] = deque()
        self.slot_idle_ms: list[float] = []

    # The loop -----------------------------------------------------------------------------

    async def run(self) -> SliceReport:
        loop = self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="slice-db")
        self._install_signal_handlers(loop)
        try:
            await self._work(loop)
        finally:
            self._remove_signal_handlers(loop)
            await self._db(db.close_connection)
            self._executor.shutdown(wait=True)
            if settings.BATCH_SLOT_IDLE_LOG:
                _append_slot_idle(settings.BATCH_SLOT_IDLE_LOG, self.slot_idle_ms)
        self.report.stop_signal = self._stop_signal
        return self.report

    async def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        start = loop.time()
        deadline, hard_deadline = start + self.budget_s, start + self.hard_limit_s
        self._deadline = deadline
        last_flush = last_renew = start
        idle = False
        while True:
            now = loop.time()
            if self._stopping:
                await self._stop_inflight()
                break
            if now >= hard_deadline:
                # django-q2 would kill the task soon: give the stragglers back instead.
                await self._stop_inflight(grace_s=0)
                break
            if now < deadline:
                if self._should_claim(now):
                    # Write first, then refill, in one trip to the database thread: finished
                    # rows count as running until written, against the batch caps. (Refilling
                    # first, discounting the unwritten rows, cut the slot idle time but let a
                    # crash re-send more rows than the batch's concurrency; docs/performance.md.)
                    claimed = await self._claim(self.max_inflight - len(self.inflight))
                    last_flush = loop.time()
                    # Rows answered from the cache never go in flight: claim again at once.
                    if not self.inflight and not claimed:
                        await self._flush()
                        wait = await self._db(db.idle_wait)
                        if wait is None or loop.time() + wait >= deadline:
                            idle = True
                            break
                        self._claim_after = loop.time() + min(wait, 1.0)
            elif not self.inflight:
                break
            pause = FLUSH_INTERVAL_S
            if loop.time() < deadline and (not self.inflight or self._wants_rows()):
                pause = self._claim_after - loop.time()  # claims are spaced MIN_CLAIM_INTERVAL_S
            await self._sleep(min(FLUSH_INTERVAL_S, pause))
            now = loop.time()
            if (self.events or len(self.buffer) >= FLUSH_ROWS
                    or now - last_flush >= FLUSH_INTERVAL_S):
                await self._flush()
                last_flush = loop.time()
            if now - last_renew >= self.lease_s / 4:
                await self._renew()
                last_renew = loop.time()
        await self._flush()
        if not (idle or self._stopping) and self.enqueue is not None:
            hint = self.batch_id or next(iter(self.report.batches), None)
            if hint is not None and await self._db(db.has_work):
                await self._db(self.enqueue, hint)  # django-q2 writes to the ORM broker
                self.report.continued = True

    def _wants_rows(self) -> bool:
        held = len(self.inflight)
        return held < self.max_inflight and (
            self.window - held >= max(1, self.window * REFILL_FRACTION))

    def _should_claim(self, now: float) -> bool:
        if len(self.inflight) >= self.max_inflight or now < self._claim_after:
            return False
        # Held at a batch cap, it still looks now and then: other slices may have freed room,
        # or new batches arrived.
        return self._wants_rows() or now - self._last_claim >= CAPPED_RECHECK_S

    async def _sleep(self, seconds: float) -> None:
        """Sleep until a row finishes, a stop is requested, or `seconds` pass."""
        assert self._wake is not None
        if seconds > 0 and not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), seconds)
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(0)  # always let the rows run
        self._wake.clear()

    # Database calls, on the one database thread ---------------------------------------------

    async def _db(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(_on_db_thread, fn, *args,
                                                                  **kwargs))

    async def _claim(self, limit: int) -> int:
        """Write what has finished, then claim up to `limit` rows. Both run in one call on the
        database thread: the claim does not wait for the event loop, busy with a wave of
        answers, to come round between them."""
        loop = asyncio.get_running_loop()
        held = Counter(row.batch.id for row, _ in self.inflight.values())
        now = loop.time()
        alone_ok = {b for b, since in self._alone_since.items() if now - since >= ALONE_GRACE_S}
        others: dict[int, int] = {}
        outcomes, events = self.buffer, self.events
        self.buffer, self.events = [], BatchEvents()
        written, rows = await self._db(_write_then_claim, outcomes, events, set(held), limit,
                                       lease_s=self.lease_s, held=held, alone_ok=alone_ok,
                                       others=others)
        self._after_write(written, outcomes, events)
        for batch_id, running_elsewhere in others.items():
            if running_elsewhere:
                self._alone_since.pop(batch_id, None)
            else:
                self._alone_since.setdefault(batch_id, now)
        self._last_claim = loop.time()
        self._claim_after = self._last_claim + MIN_CLAIM_INTERVAL_S
        # Fewer rows than asked: batch caps hold the window at what it has now.
        self.window = self.max_inflight if len(rows) == limit else max(1, len(self.inflight)
                                                                        + len(rows))
        for row in rows:
            self.report.batches.add(row.batch.id)
            cached = answers.from_cache(row) if row.cached is not None else None
            if cached is not None:
                # Written by the same bulk write as a model answer; no request, no limiter token.
                self.buffer.append(cached)
                continue
            task = asyncio.create_task(self._run_row(row), name=f"row {row.id}")
            self.inflight[row.id] = (row, task)
        self.report.claimed += len(rows)
        return len(rows)

    async def _flush(self) -> None:
        if not self.buffer and not self.events:
            return
        outcomes, events = self.buffer, self.events
        self.buffer, self.events = [], BatchEvents()
        busy = {row.batch.id for row, _ in self.inflight.values()}
        self._after_write(await self._db(_write, outcomes, events, busy), outcomes, events)

    def _after_write(self, written: bool, outcomes: list[Outcome], events: BatchEvents) -> None:
        if written:
            self.report.written += len(outcomes)
            return
        # Kept for the next flush; if that never succeeds the leases expire and rescue hands
        # the rows to another worker.
        self.buffer[:0] = outcomes
        self.events.merge(events)

    async def _renew(self) -> None:
        tokens = {row.token for row, _ in self.inflight.values()}
        batch_ids = {row.batch.id for row, _ in self.inflight.values()}
        keys = {key for row, _ in self.inflight.values() for key in row.budget_keys}
        try:
            await self._db(db.renew_leases, tokens, batch_ids, lease_s=self.lease_s,
                           budget_keys=keys)
        except DatabaseError:
            log.exception("Renewing leases failed")

    # Rows ---------------------------------------------------------------------------------

    async def _run_row(self, row: ClaimedRow) -> None:
        started = time.monotonic()
        try:
            outcome = await answers.answer_row(self._send, row)
        except RetryableError as exc:
            outcome = self._after_retryable(row, exc)
        except PermanentError as exc:
            outcome = Outcome(row, Kind.FAILED, error=exc.message)
        except ApiUnavailable as exc:
            # The circuit is open: the row waits for the API without spending an attempt.
            outcome = Outcome(row, Kind.RELEASE, error=exc.message,
                              not_before=timezone.now() + timedelta(seconds=1))
        except ConfigurationError as exc:
            self.events.failures.setdefault(row.batch.id, exc.message)
            outcome = Outcome(row, Kind.RELEASE)
        except DatabaseError as exc:  # the shared limiter's state was out of reach
            log.warning("Row %s goes back to pending: %s", row.id, exc)
            outcome = Outcome(row, Kind.RELEASE, not_before=timezone.now() + timedelta(seconds=1))
        except Exception as exc:  # one row's bug must not stop the others
            log.exception("Row %s failed unexpectedly", row.id)
            outcome = Outcome(row, Kind.FAILED, error=f"{type(exc).__name__}: {exc}")
        finished = time.monotonic()
        outcome.latency_ms = round((finished - started) * 1000)
        outcome.answered_at = timezone.now()
        self.buffer.append(outcome)
        del self.inflight[row.id]
        self._freed_at.append(finished)
        assert self._wake is not None
        self._wake.set()

    async def _send(self, row: ClaimedRow) -> Response:
        """The one place a request leaves the engine: breaker, shared rate limit, provider."""
        batch, model = row.batch, row.batch.model
        provider = catalog.provider_for(model)
        attached = await documents.attachments(row.documents, prompt_bytes=len(row.prompt) * 4,
                                               provider=provider, run_db=self._run_db)
        request = row.request(documents=attached.parts)
        if not await limits.allow(model, run_db=self._run_db):
            self._api_waiting(row)
            if not await limits.wait_until_allowed(model, run_db=self._run_db,
                                                   timeout=max(0.0, self._time_left())):
                raise ApiUnavailable(f"The {model} API is not answering; waiting for it.")
        estimate = limits.estimate_tokens(
            row.prompt + "".join(p + a for p, a in row.history) + batch.system_instruction
        ) + attached.tokens
        await limits.acquire(model, rpm=batch.rpm_limit, tpm=batch.tpm_limit, tokens=estimate,
                             run_db=self._run_db)
        if self._freed_at:
            self.slot_idle_ms.append((time.monotonic() - self._freed_at.popleft()) * 1000)
        try:
            response = await provider.generate(request)
        except FileUnavailable:
            await self._run_db(lambda: documents.forget_files(row.documents))
            raise
        except RetryableError as exc:
            if exc.status == 429:
                await limits.backoff(model, exc.retry_after, run_db=self._run_db)
            elif await limits.record_failure(model, run_db=self._run_db):
                self._api_waiting(row)
                raise ApiUnavailable(exc.message) from None
            raise
        except PermanentError:
            await limits.record_success(model, run_db=self._run_db)  # the API is up
            raise
        await limits.record_success(model, run_db=self._run_db)
        if batch.tpm_limit:
            used = ((response.prompt_tokens or 0) + (response.output_tokens or 0)
                    + (response.thoughts_tokens or 0))
            await limits.settle(model, tpm=batch.tpm_limit, delta=used - estimate,
                                run_db=self._run_db)
        return response

    async def _run_db(self, fn: Callable[[], Any]) -> Any:
        return await self._db(fn)

    def _time_left(self) -> float:
        return self._deadline - asyncio.get_running_loop().time()

    def _api_waiting(self, row: ClaimedRow) -> None:
        since = limits.open_since(row.batch.model) or timezone.now()
        self.events.api_waiting.setdefault(row.batch.id, since)

    def _after_retryable(self, row: ClaimedRow, exc: RetryableError) -> Outcome:
        if exc.is_daily_quota:
            self.events.pauses.setdefault(row.batch.id,
                                          daily_quota_message(row.batch.model, exc))
            return Outcome(row, Kind.RELEASE, error=exc.message)
        if row.attempts + 1 > row.batch.max_retries:
            return Outcome(row, Kind.FAILED, error=exc.message)
        delay = retry_delay(row.attempts, exc.retry_after)
        return Outcome(row, Kind.RETRY, error=exc.message,
                       not_before=timezone.now() + timedelta(seconds=delay))

    # Stopping -----------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None) -> None:
        """Stop claiming, give unfinished rows back to pending and return."""
        if not self._stopping:
            log.info("Slice stopping%s", f" on signal {signum}" if signum else "")
            self._stopping = True
            self._stop_signal = signum
        if self._wake is not None:
            self._wake.set()

    def stop_soon(self) -> None:
        """request_stop() from another thread."""
        self._loop.call_soon_threadsafe(self.request_stop)

    async def _stop_inflight(self, grace_s: float = STOP_GRACE_S) -> None:
        tasks = [task for _, task in self.inflight.values()]
        if tasks and grace_s:
            await asyncio.wait(tasks, timeout=grace_s)
        unfinished = [row for row, task in self.inflight.values()]
        for _, task in self.inflight.values():
            task.cancel()
        await asyncio.gather(*(task for _, task in self.inflight.values()),
                             return_exceptions=True)
        self.inflight.clear()
        self.buffer += [Outcome(row, Kind.RELEASE) for row in unfinished]
        self.report.released += len(unfinished)
        await self._flush()

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous_handlers: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            try:
                loop.add_signal_handler(signum, self.request_stop, signum)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread: the slice runs to its budget instead
            self._previous_handlers[signum] = previous

    def _remove_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum, previous in self._previous_handlers.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous)


def _append_slot_idle(path: str, samples: list[float]) -> None:
    """One JSON line per slice; flock keeps lines of concurrent worker processes whole."""
    import fcntl
    import json

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps([round(s, 2) for s in samples]) + "\n")


def _write_then_claim(outcomes: list[Outcome], events: BatchEvents, busy: set[int], limit: int,
                      **claim: Any) -> tuple[bool, list[ClaimedRow]]:
    """On the database thread: write the outcomes (if any), then claim; a failure of either is
    logged and the other still runs. Returns (written, claimed rows)."""
    from django.db import connection

    written = _write(outcomes, events, busy) if outcomes or events else True
    try:
        return written, db.claim_rows(limit, **claim)
    except DatabaseError:
        log.exception("Claiming rows failed; trying again shortly")
        connection.close()
        return written, []


def _write(outcomes: list[Outcome], events: BatchEvents, busy: set[int]) -> bool:
    """On the database thread: write the outcomes (`busy`: batches the slice still has rows of
    in flight); False (logged) if the database failed."""
    from django.db import connection

    try:
        db.write_outcomes(outcomes, events, busy=busy)
    except DatabaseError:
        log.exception("Writing %d results failed; will try again", len(outcomes))
        connection.close()  # reopened by the next call
        return False
    return True


def _on_db_thread(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    from django.db import connection

    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        # A broken connection is reopened by the next call instead of failing every call.
        connection.close()
        raise


def run_slice(batch_id: int | None = None, *, budget_s: float | None = None,
              enqueue: Enqueue | None = None) -> SliceReport:
    """Run one slice to its budget (or until there is no work); `enqueue(batch_id)` starts its
    continuation when work is left."""
    catalog.preload()
    slice_ = Slice(batch_id, budget_s=budget_s, enqueue=enqueue)
    report = asyncio.run(slice_.run())
    if report.stop_signal == signal.SIGTERM and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        # django-q2's worker would have died of this SIGTERM; die now that the rows are safe.
        signal.raise_signal(signal.SIGTERM)
    return report
