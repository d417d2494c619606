"""Helpers for tests/engine/test_faults.py: breaking PostgreSQL, Redis queues for clusters on "other
hosts", a sped-up rescue schedule, reads that survive a database restart, and arithmetic over
the fake server's request log."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from django.db import Error as DatabaseError
from django.db import connection

from batches import engine
from batches.engine import tasks
from batches.models import Batch, BatchResult
from tests.helpers.engine import assert_counters_match_rows
from tests.helpers.services import missing

PROMPT = "Say: {{text}}"


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def prompt_of(i: int) -> str:
    return f"Say: row {i}"


# The database ---------------------------------------------------------------------------------

def require_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL=postgres://...)")


def read(fn: Callable[[], Any], timeout: float = 60) -> Any:
    """Run a read, reconnecting while the database is away (a restart breaks every connection,
    the test's own included)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except DatabaseError:
            connection.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def pg_cluster() -> tuple[str, str]:
    """(version, name) of the local Debian PostgreSQL cluster the tests use."""
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if not versions or shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        missing("restarting PostgreSQL needs root and Debian's pg_ctlcluster")
    host = connection.settings_dict.get("HOST") or "localhost"
    if host not in ("localhost", "127.0.0.1", "::1", ""):
        pytest.skip(f"the database server {host} is not this machine's")
    return versions[-1], "main"


def pg_is_up(version: str, name: str) -> bool:
    status = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name,
                             "status"], capture_output=True, text=True)
    return status.returncode == 0


def restart_postgresql(version: str, name: str) -> float:
    """Restart the server (fast shutdown: every client is disconnected); returns the seconds it
    was away. Whatever happens, the server is running again when this returns or raises."""
    started = time.monotonic()
    try:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
                       check=True, capture_output=True, timeout=120)
    finally:
        if not pg_is_up(version, name):
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name,
                            "start"], capture_output=True, timeout=120)
    return time.monotonic() - started


# Rows -----------------------------------------------------------------------------------------

def running_prompts(batch_id: int) -> set[str]:
    return set(BatchResult.objects.filter(batch_id=batch_id, status=BatchResult.Status.RUNNING)
               .values_list("prompt", flat=True))


def succeeded(batch_id: int) -> int:
    return BatchResult.objects.filter(batch_id=batch_id,
                                      status=BatchResult.Status.SUCCEEDED).count()


def assert_every_row_succeeded_with_its_own_output(batch_id: int, n: int) -> None:
    results = list(BatchResult.objects.filter(batch_id=batch_id).order_by("index")
                   .values_list("index", "status", "output"))
    assert len(results) == n
    wrong = [(i, status, output) for i, status, output in results
             if (status, output) != ("succeeded", f"ECHO: {prompt_of(i)}")]
    assert wrong == [], wrong[:10]
    # The triggers' counters, after workers were killed, retried and raced over these rows.
    assert_counters_match_rows(batch_id)


def attempts_spent(batch_id: int) -> int:
    from django.db.models import Sum

    return BatchResult.objects.filter(batch_id=batch_id).aggregate(n=Sum("attempts"))["n"] or 0


def sent_beyond_attempts(batch_id: int, log: list[dict]) -> list[tuple[int, int, list[int]]]:
    """(row index, attempts, statuses the server answered) for each row sent more often than its
    attempts count: a request that spent no attempt."""
    sent: dict[str, list[int]] = defaultdict(list)
    for entry in sorted(log, key=lambda e: e["time"]):
        sent[entry["prompt"]].append(entry["status"])
    rows = BatchResult.objects.filter(batch_id=batch_id).values_list("index", "prompt", "attempts")
    return [(index, attempts, sent[prompt]) for index, prompt, attempts in rows
            if len(sent[prompt]) > attempts]


# Rescue ---------------------------------------------------------------------------------------

class Rescuer:
    """The every-minute rescue schedule, sped up: `tick()` runs engine.rescue once `period`
    seconds have passed since the last run. Use it as wait_for_batch's `tick`."""

    def __init__(self, period: float = 1.0, enqueue: Callable[[int], Any] | None = None) -> None:
        self.period = period
        self.enqueue = enqueue or tasks.enqueue_batch
        self.last = -float("inf")
        self.runs = 0

    def tick(self) -> None:
        if time.monotonic() - self.last >= self.period:
            self.last = time.monotonic()
            try:
                engine.rescue(enqueue=self.enqueue)
            except DatabaseError:
                connection.close()  # the database is restarting; the next tick tries again
            self.runs += 1


def wait_until(predicate: Callable[[], Any], timeout: float, *, what: str = "",
               tick: Callable[[], None] | None = None, poll: float = 0.2,
               logs: Callable[[], str] | None = None) -> Any:
    """Poll `predicate` (through read(), so a restarting database is waited out)."""
    end = time.monotonic() + timeout
    while True:
        value = read(predicate)
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}"
                                 + ("\n" + logs() if logs else ""))
        if tick is not None:
            tick()
        time.sleep(poll)


def finished_batch(batch_id: int, timeout: float, *, tick=None, logs=None) -> Batch:
    def done():
        batch = Batch.objects.get(pk=batch_id)
        return batch if batch.is_finished else None

    try:
        batch = wait_until(done, timeout, what=f"batch {batch_id} to finish", tick=tick)
    except AssertionError as exc:
        counts = read(lambda: Batch.objects.get(pk=batch_id).live_status_counts())
        raise AssertionError(f"{exc}: {counts}\n{logs() if logs else ''}") from None
    read(lambda: assert_counters_match_rows(batch_id))
    return batch


# Redis: clusters "on other hosts" ---------------------------------------------------------------

def redis_enqueue(url: str) -> Callable[[int], Any]:
    """tasks.enqueue_batch, but onto the Redis queue the clusters read (this test process runs
    with the ORM broker)."""
    import redis
    from django.conf import settings
    from django_q.brokers.redis_broker import Redis
    from django_q.tasks import async_task

    class _Broker(Redis):
        @staticmethod
        def get_connection(list_key: str | None = None):
            return redis.from_url(url)

    broker = _Broker(list_key=settings.Q_CLUSTER["name"])

    def enqueue(batch_id: int) -> None:
        for _ in range(settings.Q_CLUSTER["workers"]):
            async_task("batches.engine.tasks.run_slice", batch_id, group=f"batch-{batch_id}",
                       task_name=f"slice batch {batch_id}", broker=broker)

    return enqueue


# The fake server's request log ------------------------------------------------------------------

def sends(fake) -> Counter:
    """Requests the server received, per prompt."""
    return Counter(fake.stats.by_prompt)


def resends(counts: Counter) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def max_in_window(times: Iterable[float], window: float) -> int:
    """The most events in any `window`-second interval."""
    ordered, best, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def gaps_after_429(log: list[dict]) -> list[tuple[str, float]]:
    """(prompt, seconds from a 429 answer to the end of the prompt's next request), per 429."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for entry in sorted(log, key=lambda e: e["time"]):
        by_prompt[entry["prompt"]].append(entry)
    gaps = []
    for prompt, entries in by_prompt.items():
        for before, after in zip(entries, entries[1:], strict=False):
            if before["status"] == 429:
                gaps.append((prompt, after["time"] - before["time"]))
    return gaps


def first_claim_after(batch_id: int, since: float) -> float:
    """Unix time of the first claim at or after `since` (when a restarted cluster got going)."""
    from datetime import UTC, datetime

    from django.db.models import Min

    after = datetime.fromtimestamp(since, UTC)
    first = BatchResult.objects.filter(batch_id=batch_id, started_at__gte=after).aggregate(
        t=Min("started_at"))["t"]
    assert first is not None, "nothing was claimed after the restart"
    return first.timestamp()


def last_claim_of(batch_id: int, prompts: set[str]) -> float:
    """Unix time of the latest claim among rows with these prompts (their final run)."""
    from django.db.models import Max

    last = BatchResult.objects.filter(batch_id=batch_id, prompt__in=prompts).aggregate(
        t=Max("started_at"))["t"]
    return last.timestamp()
