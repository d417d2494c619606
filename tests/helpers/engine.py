"""Fixtures and helpers for driving the engine in-process against a FakeGemini."""

from __future__ import annotations

import time

import pytest

from batches import engine
from batches.fake_gemini import FakeGemini
from batches.models import Batch


@pytest.fixture
def fake(settings):
    """A FakeGemini the engine reaches through the real google-genai client."""
    from batches import limits

    with FakeGemini() as server:
        settings.GEMINI_BASE_URL = server.url
        settings.GEMINI_API_KEY = "test-key"
        settings.BATCH_RETRY_BASE_S = 0.01
        settings.BATCH_RETRY_MAX_S = 0.05
        settings.BATCH_LEASE_SECONDS = 30
        settings.BATCH_SLICES_PER_BATCH = 1  # one slice in-process: it may take a whole batch
        limits.set_limiter(None)  # no 429 backoff or open circuit left over from another test
        yield server
    limits.set_limiter(None)


@pytest.fixture
def enqueued(monkeypatch):
    """Record what services and rescue would enqueue instead of writing to the task queue."""
    calls: list[int] = []
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", calls.append)
    return calls


def run_until_done(batch: Batch, *, timeout: float = 30, budget_s: float = 10) -> Batch:
    """Run slices in this process until the batch is finished (or paused/failed)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        engine.run_slice(batch.pk, budget_s=budget_s)
        batch.refresh_from_db()
        if batch.is_finished or batch.paused:
            return batch
        time.sleep(0.02)
    raise AssertionError(f"batch {batch.pk} still {batch.status} after {timeout} s: "
                         f"{batch.status_counts()}")


def outputs(batch: Batch) -> dict[int, tuple[str, str, str]]:
    return {
        r.index: (r.status, r.output, r.error)
        for r in batch.results.order_by("index")
    }


def wait_for(predicate, timeout: float = 15, interval: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


class BackgroundSlice:
    """engine.run_slice in a thread (no signal handlers there), for acting while rows fly."""

    def __init__(self, batch_id: int | None = None, budget_s: float = 10) -> None:
        import threading

        self.report = None
        self.error: BaseException | None = None
        self.slice = engine.Slice(batch_id, budget_s=budget_s)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import asyncio

        try:
            self.report = asyncio.run(self.slice.run())
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def join(self, timeout: float = 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "slice did not return"
        if self.error:
            raise self.error
        return self.report


def assert_counters_match_rows(batch_id: int) -> None:
    """The status counters the database keeps say what a live count over the rows says."""
    batch = Batch.objects.get(pk=batch_id)
    assert batch.status_counts() == batch.live_status_counts()
