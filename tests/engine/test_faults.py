"""Faults with real processes: killed and stopped workers, a database restart, a model API outage,
an error storm, a spent daily quota, and two clusters as if on two hosts (issue 9).

Run them on PostgreSQL (several need it and skip on SQLite):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/pytest -m faults

Workers run with short leases and slices (WORKER_ENV) so that each test takes well under 90 s;
the every-minute rescue schedule is run by the test itself every second (faults_helpers.Rescuer).
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest
from django.db import close_old_connections
from django.utils import timezone

from batches.fake_gemini import FakeGemini
from batches.models import Batch
from batches.services import batch_create, batch_resume
from tests.helpers import workers
from tests.helpers.faults import (
    PROMPT,
    Rescuer,
    assert_every_row_succeeded_with_its_own_output,
    attempts_spent,
    finished_batch,
    first_claim_after,
    gaps_after_429,
    last_claim_of,
    max_in_window,
    pg_cluster,
    prompt_of,
    read,
    redis_enqueue,
    require_postgresql,
    resends,
    restart_postgresql,
    rows,
    running_prompts,
    sends,
    sent_beyond_attempts,
    succeeded,
    wait_until,
)
from tests.helpers.services import redis_url_or_missing

qclusters = workers.qclusters

pytestmark = [pytest.mark.faults, pytest.mark.processes, pytest.mark.django_db(transaction=True)]

LEASE_S = 5
RESCUE_PERIOD_S = 1.0
WORKER_ENV = {"BATCH_LEASE_SECONDS": LEASE_S, "BATCH_SLICE_SECONDS": 8,
              "BATCH_RETRY_BASE_S": 0.05, "BATCH_RETRY_MAX_S": 1, "Q_WORKERS": 2}
# An idle slice exits; rescue re-enqueues the batch once its heartbeat is this old (2 x lease/4).
HEARTBEAT_STALE_S = 3
# The rows left after the last kill (about 400) run in a few seconds, even on a loaded machine.
TAIL_S = 12


@pytest.fixture
def fake_server():
    with FakeGemini() as server:
        yield server


@pytest.fixture
def short_leases(settings):
    # rescue() in this process judges slice heartbeats by the workers' lease length.
    settings.BATCH_LEASE_SECONDS = LEASE_S


def create(user, n: int, **options) -> Batch:
    return batch_create(owner=user, prompt=PROMPT, rows=rows(n), **options)


def test_it_loses_no_row_when_the_worker_is_killed_three_times(qclusters, fake_server, user,
                                                               short_leases):
    """SIGKILL the whole qcluster group three times during a 3,000-row batch, restarting it each
    time. Rows in flight at a kill are sent again (at least once delivery), no others."""
    require_postgresql()
    fake_server.configure(latency_ms=150, jitter_ms=50)
    rescuer = Rescuer(RESCUE_PERIOD_S)
    cluster = qclusters.start(fake_server.url, **WORKER_ENV)
    batch = create(user, 3000, concurrency=48)
    in_flight_at_kills: list[set[str]] = []

    for done in (800, 1700, 2600):
        # With rows in flight: the count once crossed `done` in CI, on a loaded machine, at a
        # moment with no row running, and a kill then strands nothing to test.
        wait_until(lambda d=done: succeeded(batch.pk) >= d and running_prompts(batch.pk), 90,
                   tick=rescuer.tick, what=f"{done} rows to succeed, with rows in flight",
                   logs=qclusters.logs)
        cluster.kill()
        in_flight = running_prompts(batch.pk)
        assert in_flight, "no row was in flight at the kill"
        in_flight_at_kills.append(in_flight)
        cluster = qclusters.start(fake_server.url, **WORKER_ENV)
        restarted_at = time.time()

    batch = finished_batch(batch.pk, 90, tick=rescuer.tick, logs=qclusters.logs)

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert_every_row_succeeded_with_its_own_output(batch.pk, 3000)
    counts = sends(fake_server)
    assert set(counts) == {prompt_of(i) for i in range(3000)}
    sent_again = {p for p, n in counts.items() if n > 1}
    assert sent_again <= set().union(*in_flight_at_kills)
    assert resends(counts) <= sum(len(s) for s in in_flight_at_kills)
    # Recovery: from the moment the restarted cluster is up (its first claim), the rows stranded
    # at the last kill wait at most a lease and a rescue period (plus an idle slice's heartbeat
    # going stale), and the few hundred rows left then take a few seconds more.
    up = first_claim_after(batch.pk, restarted_at) - restarted_at
    reclaimed = last_claim_of(batch.pk, in_flight_at_kills[-1]) - restarted_at
    finished = batch.finished_at.timestamp() - restarted_at
    assert reclaimed <= up + LEASE_S + RESCUE_PERIOD_S + HEARTBEAT_STALE_S, (up, reclaimed)
    assert finished <= up + LEASE_S + RESCUE_PERIOD_S + TAIL_S, (up, reclaimed, finished)


def test_sigterm_lets_in_flight_rows_finish_or_go_back_before_the_worker_exits(
        qclusters, fake_server, user, short_leases):
    """SIGTERM mid-batch: each slice finishes or gives back its rows, then the worker exits; a
    new cluster completes the batch without sending any finished row again."""
    fake_server.configure(latency_ms=300, jitter_ms=100)
    cluster = qclusters.start(fake_server.url, **{**WORKER_ENV, "BATCH_LEASE_SECONDS": 60})
    batch = create(user, 400, concurrency=24)
    wait_until(lambda: succeeded(batch.pk) >= 50 and running_prompts(batch.pk), 60,
               what="rows in flight", logs=qclusters.logs)
    in_flight = running_prompts(batch.pk)

    assert cluster.terminate(timeout=30), qclusters.logs()

    live = batch.results.filter(status="running", lease_expires_at__gt=timezone.now())
    assert list(live.values_list("index", flat=True)) == [], qclusters.logs()
    counts = batch.status_counts()
    assert counts["running"] == 0 and counts["failed"] == 0
    assert counts["pending"] > 0 and counts["succeeded"] + counts["pending"] == 400
    # Given back without spending an attempt.
    assert set(batch.results.filter(status="pending").values_list("attempts", flat=True)) == {0}

    qclusters.start(fake_server.url, **WORKER_ENV)
    batch = finished_batch(batch.pk, 60, tick=Rescuer(RESCUE_PERIOD_S).tick, logs=qclusters.logs)

    assert batch.status == Batch.Status.COMPLETED
    assert_every_row_succeeded_with_its_own_output(batch.pk, 400)
    counts = sends(fake_server)
    assert {p for p, n in counts.items() if n > 1} <= in_flight


@pytest.mark.serial  # every other test's connection would be cut too
def test_workers_and_web_reconnect_after_a_database_restart_and_lose_nothing(
        qclusters, fake_server, user, client, short_leases):
    """Restart PostgreSQL mid-batch (fast shutdown: every connection is cut, this test's too)."""
    require_postgresql()
    version, name = pg_cluster()
    fake_server.configure(latency_ms=100, jitter_ms=30)
    rescuer = Rescuer(RESCUE_PERIOD_S)
    cluster = qclusters.start(fake_server.url, **WORKER_ENV)
    batch = create(user, 1500, concurrency=32)
    client.force_login(user)
    wait_until(lambda: succeeded(batch.pk) >= 300, 60, what="300 rows", logs=qclusters.logs)

    restart_postgresql(version, name)

    # The web side: Django's request handler health-checks its connection at each request
    # (CONN_HEALTH_CHECKS) and reconnects; the test client skips that step, so do it here.
    close_old_connections()
    response = client.get(f"/api/batches/{batch.pk}/")
    assert response.status_code == 200
    batch = read(lambda: finished_batch(batch.pk, 90, tick=rescuer.tick, logs=qclusters.logs))

    assert cluster.alive, qclusters.logs()
    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert_every_row_succeeded_with_its_own_output(batch.pk, 1500)
    counts = sends(fake_server)
    assert set(counts) == {prompt_of(i) for i in range(1500)}
    assert resends(counts) <= 32  # at most the window in flight when the connections broke


OUTAGE_S = float(os.environ.get("FAULTS_OUTAGE_S", 20))
BREAKER_THRESHOLD = 5


@pytest.mark.parametrize("outage", ["refused", "503"])
def test_an_api_outage_opens_the_circuit_and_fails_no_row(qclusters, fake_server, user, client,
                                                         short_leases, outage):
    """The model server refuses connections (or answers 503 to everything) for OUTAGE_S
    seconds mid-batch. The issue asks for 2 minutes; 20 s (FAULTS_OUTAGE_S) spans two of the
    breaker's cool-downs (10 s, then 20 s), which is what matters, and keeps the test short.

    No row fails and rows keep their retry budgets: only the few failures before the circuit
    opened spent an attempt. Workers stop sending together and only probe meanwhile; the API
    and the page say since when the batch waits, for a batch created during the outage too;
    afterwards the window fills up again."""
    fake_server.configure(latency_ms=100, jitter_ms=30)
    concurrency, n = 32, 1200
    # With this test's fast retries (WORKER_ENV), the circuit must open on the count alone; the
    # default minimum failing time (BREAKER_MIN_FAILING_S) is for production's slower backoff.
    cluster = qclusters.start(fake_server.url, **WORKER_ENV, BREAKER_MIN_FAILING_S=0,
                              BREAKER_THRESHOLD=BREAKER_THRESHOLD, BREAKER_COOLDOWN_S=10)
    batch = create(user, n, concurrency=concurrency, max_retries=3)
    client.force_login(user)
    wait_until(lambda: succeeded(batch.pk) >= 200, 60, what="200 rows", logs=qclusters.logs)

    started = time.time()
    if outage == "refused":
        fake_server.stop()
    else:
        fake_server.configure(down=True)
    shown = wait_until(lambda: client.get(f"/api/batches/{batch.pk}/").json()[
        "waiting_on_api_since"], OUTAGE_S, what="the API to show the wait", logs=qclusters.logs)
    page = client.get(f"/batches/{batch.pk}/progress/", HTTP_HX_REQUEST="true")
    # A batch that arrives during the outage finds the circuit already open: it waits too, and
    # says so, without one of its own requests having failed first.
    late = batch_create(owner=user, prompt="Late: {{text}}", rows=rows(20))
    late_shown = wait_until(lambda: client.get(f"/api/batches/{late.pk}/").json()[
        "waiting_on_api_since"], max(1.0, started + OUTAGE_S - time.time()),
        what="the late batch to show the wait", logs=qclusters.logs)
    time.sleep(max(0.0, started + OUTAGE_S - time.time()))
    counts = batch.status_counts()
    if outage == "refused":
        fake_server.start()
    else:
        fake_server.configure(down=False)
    sent_in_outage = fake_server.stats.by_status.get(503, 0)
    fake_server.reset()
    batch = finished_batch(batch.pk, 120, tick=Rescuer(RESCUE_PERIOD_S).tick, logs=qclusters.logs)

    assert cluster.alive and batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert counts["failed"] == 0 and counts["pending"] > 0
    since = datetime.fromisoformat(shown.replace("Z", "+00:00")).timestamp()
    assert started - 1 <= since <= started + OUTAGE_S
    assert "Waiting on the model API" in page.content.decode()
    assert_every_row_succeeded_with_its_own_output(batch.pk, n)
    assert started - 1 <= datetime.fromisoformat(late_shown.replace("Z", "+00:00")).timestamp()
    late = finished_batch(late.pk, 30, logs=qclusters.logs)
    assert list(late.results.order_by("index").values_list("output", flat=True)) == [
        f"ECHO: Late: row {i}" for i in range(20)]
    # Only failures before the circuit opened spent attempts (answers already on their way
    # when it went down can close it again, so a few rounds of them): at most one per row of
    # the window in all, and no row needed more than its retry budget (attempts counts the
    # successful call too, so max_retries + 1 is a row that succeeded on its last try).
    attempts = list(batch.results.values_list("attempts", flat=True))
    assert sum(attempts) - n <= concurrency and max(attempts) <= batch.max_retries + 1
    if outage == "503":
        # The window in flight when it went down, what each process sent before it saw the
        # circuit open, and a probe per cool-down: not a storm.
        assert sent_in_outage <= 2 * concurrency + 5, sent_in_outage
    # Back at full speed: the window filled up again instead of trickling.
    assert fake_server.stats.max_in_flight >= concurrency // 2
    assert client.get(f"/api/batches/{batch.pk}/").json()["waiting_on_api_since"] is None


RETRY_DELAY_S = 1.0


def test_an_error_storm_is_ridden_out_within_the_retry_budgets(qclusters, fake_server, user,
                                                              short_leases):
    """30 % of calls answer 500/503 and 10 % answer 429 with a retry delay.

    With the default breaker threshold (10 transient failures in a row, about 6 in a million at
    a 30 % error rate) a storm does not open the circuit, so every request spends an attempt."""
    fake_server.configure(latency_ms=20, error_rate=0.4,
                          error_mix={500: 0.375, 503: 0.375, 429: 0.25},
                          retry_delay_s=RETRY_DELAY_S)
    n, concurrency = 300, 32
    qclusters.start(fake_server.url, **WORKER_ENV)
    batch = create(user, n, concurrency=concurrency, max_retries=20)

    batch = finished_batch(batch.pk, 120, tick=Rescuer(RESCUE_PERIOD_S).tick, logs=qclusters.logs)

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert_every_row_succeeded_with_its_own_output(batch.pk, n)
    stats = fake_server.snapshot(log=True)
    assert stats["by_status"].get("429", 0) > 0
    assert stats["by_status"].get("500", 0) + stats["by_status"].get("503", 0) > 0
    gaps = gaps_after_429(stats["log"])
    early = [(prompt, round(gap, 3)) for prompt, gap in gaps if gap < RETRY_DELAY_S]
    assert gaps and early == []
    # Every failed request spent an attempt. Some 200 of them failed, so a retry that spent
    # none would show as a gap of that size; a slack of one window covers the few requests an
    # overloaded machine can legitimately send twice (a lease lost to a stalled worker, a
    # circuit opened by a run of failures that no recorded success broke): CI saw 2 of 514.
    unpaid = stats["total_requests"] - attempts_spent(batch.pk)
    assert unpaid <= concurrency, (unpaid, sent_beyond_attempts(batch.pk, stats["log"]),
                                   qclusters.logs())


def test_a_spent_daily_quota_pauses_the_batch_instead_of_retrying(qclusters, fake_server, user,
                                                                 short_leases):
    fake_server.configure(daily_quota_exhausted=True, retry_delay_s=30)
    concurrency, n = 8, 200
    qclusters.start(fake_server.url, **WORKER_ENV)
    batch = create(user, n, concurrency=concurrency)

    batch = wait_until(lambda: Batch.objects.filter(pk=batch.pk, status="paused").first(), 60,
                       what="the batch to pause", logs=qclusters.logs)
    wait_until(lambda: batch.status_counts()["running"] == 0, 30, what="rows to be given back")
    sent = fake_server.stats.total
    time.sleep(5)  # a batch retrying every few seconds would show here

    assert "daily quota" in batch.last_error.lower(), batch.last_error
    assert 0 < sent <= 2 * concurrency and fake_server.stats.total == sent
    assert batch.status_counts()["pending"] == n
    assert set(batch.results.values_list("attempts", flat=True)) == {0}

    fake_server.configure(daily_quota_exhausted=False)
    batch_resume(batch=batch)
    batch = finished_batch(batch.pk, 60, tick=Rescuer(RESCUE_PERIOD_S).tick, logs=qclusters.logs)
    assert batch.status == Batch.Status.COMPLETED
    assert_every_row_succeeded_with_its_own_output(batch.pk, n)


REDIS_DB = 5
RPM_LIMIT = 6000


@pytest.fixture
def redis_url():
    import redis

    url = redis_url_or_missing(REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


def test_two_hosts_share_a_batch_and_its_rate_limit_and_one_finishes_alone(
        qclusters, fake_server, user, redis_url, short_leases):
    """Two qclusters with REDIS_URL (Redis broker, cache and limiter) and PostgreSQL, as if on
    two hosts: same queue, separate clusters. No row is sent twice at once, the batch's rate
    limit holds for both together, and killing one leaves the other to finish."""
    require_postgresql()
    fake_server.configure(latency_ms=100)
    env = {**WORKER_ENV, "REDIS_URL": redis_url}
    first, second = qclusters.start(fake_server.url, **env), qclusters.start(fake_server.url,
                                                                             **env)
    n = 5000
    batch = create(user, n, concurrency=64, rpm_limit=RPM_LIMIT)
    enqueue = redis_enqueue(redis_url)
    enqueue(batch.pk)
    enqueue(batch.pk)  # a slice for each of the four workers
    rescuer = Rescuer(RESCUE_PERIOD_S, enqueue=enqueue)
    wait_until(lambda: succeeded(batch.pk) >= n // 2, 120, tick=rescuer.tick,
               what=f"{n // 2} rows", logs=qclusters.logs)
    first.kill()
    in_flight = running_prompts(batch.pk)

    batch = finished_batch(batch.pk, 120, tick=rescuer.tick, logs=qclusters.logs)

    assert batch.status == Batch.Status.COMPLETED and second.alive, qclusters.logs()
    both_ran = all("'batches.engine.tasks.run_slice'" in c.output() for c in (first, second))
    assert both_ran
    assert_every_row_succeeded_with_its_own_output(batch.pk, n)
    stats = fake_server.snapshot(log=True)
    assert stats["max_concurrency_per_prompt"] == 1
    assert {p for p, k in sends(fake_server).items() if k > 1} <= in_flight
    # The shared bucket: capacity C = RPM/60 (one second of burst), refill (RPM - C)/60 per
    # second. Any window of W seconds holds at most C + rate x W grants; two seconds of slack
    # for requests that left a busy event loop late. Unthrottled, the two clusters send about
    # twice that on this kind of machine (2 cores), so a limiter per process would show.
    burst, rate, window = RPM_LIMIT / 60, (RPM_LIMIT - RPM_LIMIT / 60) / 60, 10
    most = max_in_window([e["time"] for e in stats["log"]], window)
    assert most <= burst + rate * (window + 2), most
