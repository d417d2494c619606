"""Batch mode in real `qcluster` processes against the fake: a large batch in several jobs with
shuffled answers, rows missing from results, a job stuck PENDING (online fallback, or a new
job), an expired job, a job "SUCCEEDED" with every row failed, a worker killed while writing a
job's results, and cancel while a job runs."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from batches import services
from batches.batchmode import tasks as batch_tasks
from batches.fake_gemini import FakeGemini
from batches.models import Batch, ProviderJob
from tests.helpers import costs as cost_helpers
from tests.helpers import workers
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters
prices = cost_helpers.prices

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

FAST = {"BATCH_MODE_POLL_S": "0.1", "BATCH_MODE_INLINE_BYTES": "20000"}


@pytest.fixture(autouse=True)
def no_poller_lock():
    """The shared cache is a table a test's flush leaves alone: a poller killed by an earlier
    test may have left its lock (it expires by itself in about two poll budgets)."""
    cache.delete(batch_tasks.POLLER_KEY)


@pytest.fixture
def fake_server():
    with FakeGemini(batch_pending_s=0.2, batch_running_s=0.2) as server:
        yield server


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def assert_every_answer_on_its_own_row(batch: Batch, n: int) -> None:
    results = list(batch.results.order_by("index").values_list("status", "output"))
    assert results == [("succeeded", f"ECHO: Say: row {i}") for i in range(n)]
    batch.refresh_from_db()
    assert batch.prompt_tokens == sum(batch.results.values_list("prompt_tokens", flat=True))


def test_twenty_thousand_rows_in_four_jobs_with_shuffled_answers(qclusters, fake_server,
                                                                 make_batch):
    fake_server.configure(batch_shuffle=True)
    qclusters.start(fake_server.url, **FAST, BATCH_MODE_MAX_ROWS=5000)
    batch = make_batch(rows(20_000), mode="batch")
    batch = wait_for_batch(batch.pk, timeout=120, clusters=qclusters)
    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    jobs = list(batch.provider_jobs.values_list("row_count", "succeeded_rows", "state"))
    assert jobs == [(5000, 5000, "JOB_STATE_SUCCEEDED")] * 4, qclusters.started[0].output()
    assert all(j.input_file for j in batch.provider_jobs.all())  # above the inline limit
    assert_every_answer_on_its_own_row(batch, 20_000)
    assert fake_server.stats.total == 0


def test_rows_missing_from_the_results_are_resubmitted_and_finish(qclusters, fake_server,
                                                                  make_batch):
    fake_server.configure(batch_missing_rate=0.05)
    qclusters.start(fake_server.url, **FAST)
    batch = make_batch(rows(400), mode="batch")
    batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters)
    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    first = batch.provider_jobs.order_by("id").first()
    assert 0 < first.returned_rows < 60 and batch.provider_jobs.count() >= 2
    assert_every_answer_on_its_own_row(batch, 400)


@pytest.mark.parametrize("fallback", [True, False])
def test_a_job_stuck_pending_past_the_wait(qclusters, fake_server, make_batch, fallback):
    fake_server.configure(batch_stuck_jobs=1)
    qclusters.start(fake_server.url, **FAST, BATCH_MODE_MAX_WAIT=1)
    batch = make_batch(rows(100), mode="batch", fallback_online=fallback)
    batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters)
    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    states = list(batch.provider_jobs.order_by("id").values_list("state", flat=True))
    if fallback:  # the rows ran online, at the online price, with a note
        assert states == ["JOB_STATE_CANCELLED"] and fake_server.stats.total == 100
        assert "run online at the online price" in batch.last_error
    else:  # a new job took them
        assert states == ["JOB_STATE_CANCELLED", "JOB_STATE_SUCCEEDED"]
        assert fake_server.stats.total == 0
    assert_every_answer_on_its_own_row(batch, 100)


def test_an_expired_job_and_a_job_succeeded_with_every_row_failed(qclusters, fake_server,
                                                                  make_batch):
    fake_server.configure(batch_expire_jobs=1, batch_all_failed_jobs=1)
    qclusters.start(fake_server.url, **FAST)
    batch = make_batch(rows(200), mode="batch", fallback_online=False)
    batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters)
    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    jobs = list(batch.provider_jobs.order_by("id").values_list("state", "succeeded_rows",
                                                               "failed_rows"))
    assert jobs == [("JOB_STATE_EXPIRED", 0, 0), ("JOB_STATE_SUCCEEDED", 0, 200),
                    ("JOB_STATE_SUCCEEDED", 200, 0)]
    assert (batch.succeeded_count, batch.failed_count) == (200, 0)
    assert set(batch.results.values_list("attempts", flat=True)) == {2}
    assert_every_answer_on_its_own_row(batch, 200)


@pytest.mark.usefixtures("prices")
def test_a_worker_killed_while_writing_results_loses_and_doubles_nothing(
        qclusters, fake_server, make_batch):
    fake_server.configure(batch_running_s=1.0)
    cluster = qclusters.start(fake_server.url, **FAST)
    batch = make_batch(rows(4000), mode="batch")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        done = batch.results.filter(status="succeeded").count()
        if 0 < done < 4000:
            cluster.kill()
            break
        time.sleep(0.02)
    assert 0 < done < 4000, qclusters.logs()
    qclusters.start(fake_server.url, **FAST)
    # The schedule's part, faster: poll now and then (the killed poller's lock expires).
    batch = wait_for_batch(batch.pk, timeout=90, clusters=qclusters, poll=0.5,
                           tick=batch_tasks.enqueue_poll)
    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert list(batch.provider_jobs.values_list("state", flat=True)) == ["JOB_STATE_SUCCEEDED"]
    assert set(batch.results.values_list("attempts", flat=True)) == {1}
    assert_every_answer_on_its_own_row(batch, 4000)
    assert batch.costed_rows == 4000
    assert batch.cost_spent == sum(batch.results.values_list("cost", flat=True))


def test_cancel_while_a_job_runs_cancels_it_and_keeps_what_raced_in(qclusters, fake_server,
                                                                    make_batch):
    fake_server.configure(batch_pending_s=0, batch_running_s=6.0)
    qclusters.start(fake_server.url, **FAST)
    batch = make_batch(rows(300), mode="batch")
    wait_for_batch(batch.pk, timeout=30, clusters=qclusters, until=lambda b: ProviderJob.objects
                   .filter(batch=b, state="JOB_STATE_RUNNING").exists())
    time.sleep(1.0)
    services.batch_cancel(batch=Batch.objects.get(pk=batch.pk))
    batch = wait_for_batch(batch.pk, timeout=30, clusters=qclusters)
    assert batch.status == Batch.Status.CANCELLED, qclusters.logs()
    assert fake_server.app.batches.counts["cancelled"] == 1
    counts = batch.status_counts()
    assert counts["succeeded"] > 0 and counts["cancelled"] > 0
    assert counts["succeeded"] + counts["cancelled"] == 300
    assert batch.provider_jobs.get().state == "JOB_STATE_CANCELLED"
