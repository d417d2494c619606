"""The engine in real `qcluster` processes: end to end, two clusters, SIGKILL and SIGTERM."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from batches import engine
from batches.engine import tasks
from batches.fake_gemini import FakeGemini
from batches.models import Batch, BatchResult
from tests.helpers import workers
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fake_server():
    with FakeGemini() as server:
        yield server


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def assert_every_row_succeeded_once(batch: Batch, n: int) -> None:
    results = list(batch.results.order_by("index").values_list("status", "output", "attempts"))
    assert results == [("succeeded", f"ECHO: Say: row {i}", 1) for i in range(n)]


def test_a_batch_runs_to_the_end_in_a_real_qcluster(qclusters, fake_server, make_batch):
    fake_server.configure(latency_ms=20, jitter_ms=10)
    cluster = qclusters.start(fake_server.url)
    batch = make_batch(rows(300), concurrency=32)

    batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters)

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert_every_row_succeeded_once(batch, 300)
    assert fake_server.stats.total == 300
    assert batch.prompt_tokens > 0 and cluster.alive


@pytest.mark.database
def test_two_qclusters_share_a_batch_without_sending_a_row_twice(qclusters, fake_server,
                                                                 make_batch):
    fake_server.configure(latency_ms=20, jitter_ms=15)
    # Slices of 16 under a cap of 64: several slices work the batch at once, in both clusters.
    clusters = [qclusters.start(fake_server.url, BATCH_SLICE_MAX_INFLIGHT=16) for _ in range(2)]
    batch = make_batch(rows(2000), concurrency=64)
    for _ in range(3):
        tasks.enqueue_batch(batch.pk)  # eight slices in all for the two clusters' four workers

    batch = wait_for_batch(batch.pk, timeout=90, clusters=qclusters)

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert_every_row_succeeded_once(batch, 2000)
    snapshot = fake_server.snapshot()
    assert snapshot["max_concurrency_per_prompt"] == 1
    assert snapshot["distinct_prompts"] == 2000
    assert fake_server.stats.max_in_flight <= 64
    for cluster in clusters:
        assert "processing slice" in cluster.output()  # both took part


def _rescue_now() -> None:
    engine.rescue(enqueue=tasks.enqueue_batch)


@pytest.mark.database
def test_a_killed_cluster_loses_no_row_and_a_new_one_finishes_the_batch(qclusters, fake_server,
                                                                        make_batch):
    fake_server.configure(latency_ms=150, jitter_ms=50)
    first = qclusters.start(fake_server.url)
    batch = make_batch(rows(300), concurrency=24)
    # Killed while rows are in flight: between two slices (or on a loaded machine, between a
    # write and the next claim) none may be.
    wait_for_batch(batch.pk, timeout=40, clusters=qclusters,
                   until=lambda b: (counts := b.status_counts())["succeeded"] >= 40
                   and counts["running"] >= 8)

    first.kill()
    stranded = batch.results.filter(status="running").count()
    assert stranded > 0  # rows were in flight when the worker died
    qclusters.start(fake_server.url)
    # The every-minute schedule, sped up: leases are 4 s in the workers.
    batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters, tick=_rescue_now, poll=0.5)

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert_every_row_succeeded_once(batch, 300)
    sent_twice = [p for p, n in fake_server.stats.by_prompt.items() if n > 1]
    assert len(sent_twice) <= stranded  # at least once: only rows in flight at the kill


def test_sigterm_gives_in_flight_rows_back_instead_of_stranding_them(qclusters, fake_server,
                                                                     make_batch):
    fake_server.configure(latency_ms=300)
    cluster = qclusters.start(fake_server.url, BATCH_LEASE_SECONDS=60)
    batch = make_batch(rows(300), concurrency=16)
    wait_for_batch(batch.pk, timeout=40, clusters=qclusters,
                   until=lambda b: b.status_counts()["succeeded"] >= 16
                   and b.status_counts()["running"] > 0)

    assert cluster.terminate(timeout=20), qclusters.logs()

    live = batch.results.filter(status="running", lease_expires_at__gt=timezone.now())
    assert live.count() == 0, qclusters.logs()
    counts = batch.status_counts()
    assert counts["running"] == 0 and counts["pending"] > 0
    assert counts["succeeded"] + counts["pending"] == 300
    # Rows given back did not spend an attempt.
    assert set(batch.results.filter(status="pending").values_list("attempts", flat=True)) == {0}



def test_a_small_batch_runs_at_its_own_concurrency_beside_big_ones(qclusters, fake_server,
                                                                   make_batch, other_user):
    # The measure, at 2 s a row so that a busy machine's delays weigh less: a 20-row
    # batch at concurrency 4 (ideal 10 s) beside three older big batches that fill the windows
    # (8 rows per slice here, to spare the CPU). Claimed oldest first, it would wait for most of
    # their 600 rows (some 75 s); shared, it runs at its own concurrency from the next wave on.
    # The bound, 3x the ideal, leaves room for a loaded machine and still tells the two apart.
    fake_server.configure(latency_ms=2000, jitter_ms=0)
    qclusters.start(fake_server.url, BATCH_SLICE_MAX_INFLIGHT=8)
    big = [make_batch(rows(200), owner=other_user, concurrency=100) for _ in range(3)]
    running = BatchResult.objects.filter(status="running")
    wait_for_batch(big[0].pk, timeout=30, clusters=qclusters,
                   until=lambda _: running.count() >= 14)  # both windows (nearly) full

    started = time.monotonic()
    small = make_batch(rows(20), prompt="Small: {{text}}", concurrency=4)
    small = wait_for_batch(small.pk, timeout=90, clusters=qclusters)
    took = time.monotonic() - started

    ideal = 20 / 4 * 2.0
    assert small.status == Batch.Status.COMPLETED, qclusters.logs()
    starts = [(r.started_at - small.created_at).total_seconds()
              for r in small.results.order_by("index")]
    assert took < 3 * ideal, f"{took:.1f} s against an ideal of {ideal:.1f} s; rows started " \
                             f"{', '.join(f'{s:.1f}' for s in starts)} s after creation"
    assert any(b.results.filter(status="pending").exists() for b in big)  # they still ran
    for batch in big:
        engine_cancel(batch)


def engine_cancel(batch: Batch) -> None:
    from batches.services import batch_cancel

    batch_cancel(batch=Batch.objects.get(pk=batch.pk))
