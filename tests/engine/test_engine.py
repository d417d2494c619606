"""The engine in-process: slices against a FakeGemini through the real google-genai client."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from batches import engine, services
from batches.engine import db as engine_db
from batches.models import Batch, BatchResult, MonthlySpend
from batches.providers import Response
from tests.helpers import costs as cost_helpers
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import BackgroundSlice, outputs, run_until_done, wait_for

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued
prices = cost_helpers.prices

pytestmark = pytest.mark.django_db(transaction=True)


def rows(n: int, prefix: str = "row") -> list[dict]:
    return [{"text": f"{prefix} {i}"} for i in range(n)]


def test_it_stores_each_output_with_its_own_row(fake, make_batch, enqueued):
    batch = make_batch(rows(120), concurrency=20)
    fake.configure(latency_ms=5, jitter_ms=5)

    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED
    results = list(batch.results.order_by("index"))
    assert [r.output for r in results] == [f"ECHO: Say: row {i}" for i in range(120)]
    assert all(r.attempts == 1 and r.claim_token is None for r in results)
    assert batch.succeeded_count == 120 and batch.failed_count == 0
    assert fake.stats.total == 120
    assert batch.prompt_tokens == sum(r.prompt_tokens for r in results) > 0
    assert batch.output_tokens == sum(r.output_tokens for r in results) > 0
    assert batch.started_at and batch.finished_at


def test_it_retries_retryable_errors_and_then_succeeds(fake, make_batch, enqueued):
    fake.configure(fail_times={"row 1": 2, "row 2": 1})
    batch = make_batch(rows(4), max_retries=3)

    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED
    attempts = dict(batch.results.values_list("index", "attempts"))
    assert attempts == {0: 1, 1: 3, 2: 2, 3: 1}
    assert fake.stats.by_prompt["Say: row 1"] == 3
    assert batch.results.get(index=1).error == ""


def test_it_fails_permanent_errors_at_once(fake, make_batch, enqueued):
    fake.configure(fail_permanently=["row 1"], block_safety=["row 2"])
    batch = make_batch(rows(4), max_retries=3)

    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    got = outputs(batch)
    assert got[1][0] == "failed" and "400" in got[1][2]
    assert got[2][0] == "failed" and "blocked" in got[2][2]
    assert got[0][0] == got[3][0] == "succeeded"
    assert fake.stats.by_prompt["Say: row 1"] == 1
    assert batch.failed_count == 2 and batch.succeeded_count == 2


def test_it_gives_up_after_max_retries_and_keeps_the_last_error(fake, make_batch, enqueued):
    fake.configure(fail_times={"row 0": 100})
    batch = make_batch(rows(2), max_retries=2)

    run_until_done(batch)

    row = batch.results.get(index=0)
    assert row.status == BatchResult.Status.FAILED
    assert row.attempts == 3
    assert "503" in row.error
    assert fake.stats.by_prompt["Say: row 0"] == 3
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS


def test_it_waits_at_least_the_servers_retry_delay_after_a_429(fake, make_batch, enqueued):
    fake.configure(rpm_limit=1, rpm_window_s=60, retry_delay_s=30)
    batch = make_batch(rows(2), max_retries=3)

    engine.run_slice(batch.pk, budget_s=2)

    waiting = batch.results.get(status=BatchResult.Status.PENDING)
    assert waiting.attempts == 1
    assert "429" in waiting.error
    delay = (waiting.not_before - waiting.started_at).total_seconds()
    assert delay >= 29
    assert batch.results.filter(status=BatchResult.Status.SUCCEEDED).count() == 1


def test_an_unexpected_error_fails_only_its_own_row(fake, make_batch, enqueued, monkeypatch):
    send = engine.Slice._send

    async def broken_for_row_2(self, row):
        if row.prompt.endswith("row 2"):
            raise ValueError("boom")
        return await send(self, row)

    monkeypatch.setattr(engine.Slice, "_send", broken_for_row_2)
    batch = make_batch(rows(5))

    run_until_done(batch)

    got = outputs(batch)
    assert got[2] == ("failed", "", "ValueError: boom")
    assert [got[i][0] for i in (0, 1, 3, 4)] == ["succeeded"] * 4


def test_a_missing_api_key_fails_the_batch_once_and_resume_runs_it(fake, make_batch, enqueued,
                                                                   settings):
    settings.GEMINI_API_KEY = ""
    batch = make_batch(rows(5))

    engine.run_slice(batch.pk, budget_s=5)

    batch.refresh_from_db()
    assert batch.status == Batch.Status.FAILED
    assert batch.last_error == "GEMINI_API_KEY is not set"
    assert batch.status_counts()["pending"] == 5
    assert set(batch.results.values_list("attempts", flat=True)) == {0}
    assert fake.stats.total == 0

    settings.GEMINI_API_KEY = "test-key"
    services.batch_resume(batch=batch)
    assert enqueued == [batch.pk, batch.pk]
    run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED
    assert fake.stats.total == 5


def test_a_spent_daily_quota_pauses_the_batch_without_spending_retries(fake, make_batch,
                                                                       enqueued):
    fake.configure(daily_quota_exhausted=True)
    batch = make_batch(rows(4), max_retries=1)

    engine.run_slice(batch.pk, budget_s=5)

    batch.refresh_from_db()
    assert batch.status == Batch.Status.PAUSED and batch.paused
    assert batch.last_error.startswith("The daily quota for gemini-2.5-flash is used up")
    assert batch.status_counts()["pending"] == 4
    assert set(batch.results.values_list("attempts", flat=True)) == {0}

    fake.configure(daily_quota_exhausted=False)
    services.batch_resume(batch=batch)
    run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED


def test_an_open_circuit_holds_rows_without_spending_their_retries(fake, make_batch, enqueued,
                                                                   settings):
    settings.BREAKER_THRESHOLD = 3
    settings.BREAKER_MIN_FAILING_S = 0  # open at once: this test is about what an open circuit does
    settings.BREAKER_COOLDOWN_S = 0.3
    fake.down = True
    batch = make_batch(rows(12), max_retries=1, concurrency=4)

    engine.run_slice(batch.pk, budget_s=1.5)

    batch.refresh_from_db()
    assert batch.api_waiting_since is not None
    assert batch.status_counts()["failed"] == 0
    assert batch.status_counts()["running"] == 0
    assert max(batch.results.values_list("attempts", flat=True)) <= 1

    fake.down = False
    run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED
    assert batch.api_waiting_since is None


def test_the_shared_rate_limit_spaces_requests(fake, make_batch, enqueued):
    # A first batch without a limit warms the client up, so that the measured sends leave
    # when their permits are granted (a cold client held the first ones back by up to 0.5 s).
    run_until_done(make_batch(rows(1, "warm-up")))
    batch = make_batch(rows(4), rpm_limit=120, concurrency=4)  # one request per 0.5 s

    run_until_done(batch)

    times = sorted(entry.time for entry in fake.stats.log if "warm-up" not in entry.prompt)
    assert batch.status == Batch.Status.COMPLETED
    # A bucket of 2 (one second of burst) refilled at 118/min: two requests go at once, the
    # third and fourth wait a refill of 0.51 s each.
    assert times[-1] - times[0] >= 0.95


@pytest.mark.database
def test_cancel_lets_in_flight_rows_finish_and_cancels_the_rest(fake, make_batch, enqueued):
    # The two rows in flight are held by the server until the cancel is done: no race.
    fake.configure(hold_until_in_flight=3)  # never reached at concurrency 2
    batch = make_batch(rows(10), concurrency=2)
    running = BackgroundSlice(batch.pk)
    wait_for(lambda: fake.stats.in_flight == 2)

    cancelled = services.batch_cancel(batch=batch)
    fake.configure(hold_until_in_flight=0)
    running.join()

    assert cancelled == 8
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert (batch.succeeded_count, batch.cancelled_count) == (2, 8)
    assert fake.stats.total == 2
    assert batch.results.filter(status="cancelled", error="Cancelled before it ran.").count() == 8


@pytest.mark.database
def test_pause_stops_claiming_and_resume_runs_the_rest_once(fake, make_batch, enqueued):
    fake.configure(latency_ms=200)
    batch = make_batch(rows(12), concurrency=2)
    running = BackgroundSlice(batch.pk)
    wait_for(lambda: batch.results.filter(status="succeeded").exists())

    services.batch_pause(batch=batch)
    running.join()

    batch.refresh_from_db()
    counts = batch.status_counts()
    assert batch.status == Batch.Status.PAUSED
    assert counts["running"] == 0 and counts["pending"] > 0
    assert counts["succeeded"] == fake.stats.total < 12

    services.batch_resume(batch=batch)
    assert batch.status == Batch.Status.RUNNING and enqueued
    run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED
    assert fake.stats.total == 12 and set(fake.stats.by_prompt.values()) == {1}


@pytest.mark.database
def test_a_stopping_slice_gives_its_rows_back_without_spending_attempts(fake, make_batch,
                                                                        enqueued):
    fake.configure(latency_ms=5000)
    batch = make_batch(rows(6), concurrency=4)
    running = BackgroundSlice(batch.pk, budget_s=30)
    wait_for(lambda: fake.stats.in_flight == 4)

    running.slice.stop_soon()
    report = running.join()

    assert report.released == 4
    counts = batch.status_counts()
    assert (counts["pending"], counts["running"]) == (6, 0)
    assert set(batch.results.values_list("attempts", "claim_token")) == {(0, None)}


def test_retry_failed_runs_failed_rows_again_with_a_fresh_budget(fake, make_batch, enqueued):
    fake.configure(fail_permanently=["row 1", "row 3"])
    batch = make_batch(rows(5))
    run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    first_finish = batch.finished_at

    fake.configure(fail_permanently=[])
    assert services.batch_retry_failed(batch=batch) == 2
    retried = batch.results.get(index=1)
    assert (retried.status, retried.attempts, retried.error) == ("pending", 0, "")
    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED
    assert (batch.succeeded_count, batch.failed_count) == (5, 0)
    assert batch.finished_at > first_finish
    assert fake.stats.by_prompt["Say: row 1"] == 2 and fake.stats.by_prompt["Say: row 0"] == 1


def test_retry_one_row_runs_only_that_row(fake, make_batch, enqueued):
    fake.configure(fail_permanently=["row 1", "row 3"])
    batch = make_batch(rows(5))
    run_until_done(batch)

    fake.configure(fail_permanently=[])
    services.batch_retry_row(batch=batch, index=3)
    run_until_done(batch)

    got = outputs(batch)
    assert got[3][0] == "succeeded" and got[1][0] == "failed"
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    assert (batch.succeeded_count, batch.failed_count) == (4, 1)
    assert fake.stats.total == 6


def test_finalising_happens_once_with_the_counts(fake, make_batch, enqueued):
    fake.configure(fail_permanently=["row 0"])
    batch = make_batch(rows(3))
    run_until_done(batch)
    finished = batch.finished_at

    assert not batch.finalise_if_done()
    rescued: list[int] = []
    engine.rescue(enqueue=rescued.append)
    engine.run_slice(batch.pk, budget_s=1)

    batch.refresh_from_db()
    assert batch.finished_at == finished
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    assert (batch.total_rows, batch.succeeded_count, batch.failed_count) == (3, 2, 1)
    assert rescued == []


@pytest.mark.django_db(transaction=True)
def test_the_stored_counts_commit_with_the_final_status(fake, make_batch, enqueued, monkeypatch):
    # Written after the commit, a page or the bench polling in between saw a finished batch
    # with 0 succeeded (once, on a loaded machine).
    from django.db import connection

    in_transaction = []
    refresh = Batch.refresh_counts

    def watched(batch):
        in_transaction.append(connection.in_atomic_block)
        refresh(batch)

    monkeypatch.setattr(Batch, "refresh_counts", watched)
    batch = make_batch(rows(3))
    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED and batch.succeeded_count == 3
    assert in_transaction == [True]


def test_a_write_skips_finalising_batches_the_slice_still_runs_rows_of(fake, make_batch,
                                                                        enqueued):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    batch = make_batch(rows(2))
    first, second = engine_db.claim_rows(2, lease_s=30)

    def answer(row):
        return [engine_db.Outcome(row, engine_db.Kind.SUCCEEDED,
                                  response=Response("ok", "STOP", 1, 1, "m"))]

    with CaptureQueriesContext(connection) as busy:
        engine_db.write_outcomes(answer(first), busy={batch.pk})
    with CaptureQueriesContext(connection) as last:
        engine_db.write_outcomes(answer(second))

    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED and batch.succeeded_count == 2
    # The busy write does not load the batch to finalise it; the last one does.
    def finalising(queries):
        return [q for q in queries.captured_queries if '"batches_batch"."name"' in q["sql"]]

    assert finalising(busy) == [] and finalising(last) != []


@pytest.mark.database
def test_one_write_adds_each_batchs_own_totals_and_finishes_only_the_done_ones(
        fake, make_batch, enqueued, prices):
    # A write of many small batches' rows updates them all in one statement run per batch.
    done, also_done, open_ = make_batch(rows(2)), make_batch(rows(1)), make_batch(rows(2))
    Batch.objects.filter(pk=done.pk).update(api_waiting_since=timezone.now())
    claimed = engine_db.claim_rows(10, lease_s=30)
    assert len(claimed) == 5
    tokens = {done.pk: (10, 3), also_done.pk: (7, 2), open_.pk: (5, 1)}
    outcomes = [
        engine_db.Outcome(row, engine_db.Kind.SUCCEEDED,
                          response=Response("ok", "STOP", *tokens[row.batch.id], "m"))
        for row in claimed if not (row.batch.id == open_.pk and row.index == 1)]

    engine_db.write_outcomes(outcomes)

    for batch, (rows_done, status) in {done: (2, "completed"), also_done: (1, "completed"),
                                       open_: (1, "running")}.items():
        batch.refresh_from_db()
        answered = batch.results.filter(status="succeeded")
        prompt_tokens, output_tokens = tokens[batch.pk]
        assert (batch.status, answered.count()) == (status, rows_done), batch.name
        assert (batch.prompt_tokens, batch.output_tokens) == (prompt_tokens * rows_done,
                                                              output_tokens * rows_done)
        assert batch.cost_spent == sum((r.cost for r in answered), Decimal(0))
        assert batch.costed_rows == rows_done and batch.api_waiting_since is None
        assert batch.cost_spent > 0
    month = MonthlySpend.objects.get(user=done.owner)
    assert month.spent == sum(BatchResult.objects.filter(status="succeeded")
                              .values_list("cost", flat=True), Decimal(0))


def test_only_an_answer_that_came_after_the_wait_began_ends_a_batchs_wait_for_the_api(
        fake, make_batch, enqueued):
    # Two workers: one records the wait (its requests fail), the other then writes an answer
    # that came back before the API went down. The wait stands until an answer after it.
    from datetime import timedelta

    batch = make_batch(rows(2))
    claimed = engine_db.claim_rows(10, lease_s=30)
    waiting_since = timezone.now()
    Batch.objects.filter(pk=batch.pk).update(api_waiting_since=waiting_since)

    def answer(row, at):
        return engine_db.Outcome(row, engine_db.Kind.SUCCEEDED,
                                 response=Response("ok", "STOP", 3, 1, "m"), answered_at=at)

    engine_db.write_outcomes([answer(claimed[0], waiting_since - timedelta(seconds=1))],
                             busy={batch.pk})
    batch.refresh_from_db()
    assert batch.api_waiting_since == waiting_since and batch.prompt_tokens == 3

    engine_db.write_outcomes([answer(claimed[1], waiting_since + timedelta(seconds=1))])
    batch.refresh_from_db()
    assert batch.api_waiting_since is None and batch.prompt_tokens == 6


@pytest.mark.database
def test_rescue_returns_a_dead_workers_rows_and_they_complete_once(fake, make_batch, enqueued):
    import uuid

    batch = make_batch(rows(3))
    dead = uuid.uuid4()
    long_ago = timezone.now() - timedelta(minutes=10)
    batch.results.filter(index__in=[0, 1]).update(
        status="running", claim_token=dead, lease_expires_at=long_ago, started_at=long_ago)
    Batch.objects.filter(pk=batch.pk).update(status="running", started_at=long_ago,
                                             slice_heartbeat_at=long_ago)

    rescued: list[int] = []
    report = engine.rescue(enqueue=rescued.append)

    assert report.released == 2 and rescued == [batch.pk]
    assert not batch.results.filter(claim_token=dead).exists()
    run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED
    assert set(batch.results.values_list("attempts", flat=True)) == {1}
    assert fake.stats.total == 3 and set(fake.stats.by_prompt.values()) == {1}


def test_rescue_leaves_a_batch_with_a_live_slice_alone(fake, make_batch, enqueued):
    batch = make_batch(rows(2))
    Batch.objects.filter(pk=batch.pk).update(slice_heartbeat_at=timezone.now())
    paused = make_batch(rows(2))
    services.batch_pause(batch=paused)

    assert engine.rescue(enqueue=lambda batch_id: None).enqueued == []


@pytest.mark.database
def test_a_late_write_with_a_stale_token_changes_nothing(fake, make_batch, enqueued):
    batch = make_batch(rows(1))
    [lost] = engine_db.claim_rows(5, lease_s=30)
    BatchResult.objects.release_expired_leases(now=timezone.now() + timedelta(seconds=31))
    [current] = engine_db.claim_rows(5, lease_s=30)
    assert current.token != lost.token

    engine_db.write_outcomes([engine_db.Outcome(
        lost, engine_db.Kind.SUCCEEDED, response=Response("late", "STOP", 1, 1, "m"))])
    row = batch.results.get()
    assert (row.status, row.output, row.claim_token) == ("running", "", current.token)

    engine_db.write_outcomes([engine_db.Outcome(
        current, engine_db.Kind.SUCCEEDED, response=Response("fresh", "STOP", 1, 1, "m"))])
    row.refresh_from_db()
    assert (row.status, row.output, row.attempts) == ("succeeded", "fresh", 1)


@pytest.mark.database
def test_the_concurrency_cap_holds_across_slices(fake, make_batch, enqueued):
    fake.configure(latency_ms=30, jitter_ms=20)
    batch = make_batch(rows(80), concurrency=5)

    slices = [BackgroundSlice(batch.pk) for _ in range(3)]
    for s in slices:
        s.join()
    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED
    assert 1 < fake.stats.max_in_flight <= 5
    assert fake.stats.total == 80


@pytest.mark.database
def test_claims_take_high_priority_batches_first(fake, make_batch, enqueued, settings,
                                                 staff_user):
    settings.BATCH_SLICE_MAX_INFLIGHT = 1
    low = make_batch(rows(3), prompt="Low: {{text}}", priority="low")
    normal = make_batch(rows(3), prompt="Normal: {{text}}")
    high = make_batch(rows(3), prompt="High: {{text}}", priority="high", owner=staff_user)

    engine.run_slice(low.pk, budget_s=10)

    sent = [entry.prompt for entry in fake.stats.log]
    assert [p.split(":")[0] for p in sent] == ["High"] * 3 + ["Normal"] * 3 + ["Low"] * 3
    assert sent[:3] == ["High: row 0", "High: row 1", "High: row 2"]
    for batch in (low, normal, high):
        batch.refresh_from_db()
        assert batch.status == Batch.Status.COMPLETED


def conversation_rows() -> list[dict]:
    turns = [("a", 0), ("b", 0), ("a", 1), ("", 0), ("b", 1), ("a", 2), ("", 1), ("b", 2)]
    return [{"conv": conv, "text": f"{conv or 'solo'} turn {n}"} for conv, n in turns]


def test_conversation_turns_arrive_in_order_with_their_history(fake, make_batch, enqueued):
    fake.configure(latency_ms=20)
    batch = make_batch(conversation_rows(), prompt="{{text}}", conversation_column="conv")

    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED
    log = {entry.prompt: entry for entry in fake.stats.log}
    for conv in "ab":
        times = [log[f"{conv} turn {n}"].time for n in range(3)]
        assert times == sorted(times)
        contents = log[f"{conv} turn 2"].body["contents"]
        assert [c["role"] for c in contents] == ["user", "model"] * 2 + ["user"]
        assert [c["parts"][0]["text"] for c in contents] == [
            f"{conv} turn 0", f"ECHO: {conv} turn 0",
            f"{conv} turn 1", f"[turn 2] ECHO: {conv} turn 1",
            f"{conv} turn 2",
        ]
    assert log["solo turn 1"].contents_length == 1
    assert batch.results.get(index=7).output == "[turn 3] ECHO: b turn 2"
    assert set(fake.stats.by_prompt.values()) == {1}


def test_a_failed_turn_fails_the_later_turns_of_its_conversation(fake, make_batch, enqueued):
    fake.configure(fail_permanently=["a turn 1"])
    batch = make_batch(conversation_rows(), prompt="{{text}}", conversation_column="conv")

    run_until_done(batch)

    got = outputs(batch)
    assert got[2][0] == "failed"
    assert got[5] == ("failed", "", engine_db.EARLIER_TURN_FAILED)
    assert "a turn 2" not in fake.stats.by_prompt
    assert [got[i][0] for i in (0, 1, 3, 4, 6, 7)] == ["succeeded"] * 6
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS


def test_progress_reports_rate_eta_and_tokens(fake, make_batch, enqueued):
    batch = make_batch(rows(6))
    run_until_done(batch)

    progress = batch.progress()
    assert progress.processed == progress.total == 6 and progress.percent == 100.0
    assert progress.rows_per_minute > 0 and progress.eta_seconds == 0
    assert progress.tokens == batch.prompt_tokens + batch.output_tokens > 0


def test_migrate_creates_the_rescue_schedule_once():
    from django.core.management import call_command
    from django_q.models import Schedule

    from batches.engine.tasks import RESCUE_SCHEDULE

    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)

    schedule = Schedule.objects.get(name=RESCUE_SCHEDULE)
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "batches.engine.tasks.rescue", Schedule.MINUTES, 1, -1)
    assert Schedule.objects.filter(func="batches.engine.tasks.rescue").count() == 1


@pytest.mark.database
def test_two_slices_share_a_batch_and_a_lone_slice_takes_the_rest_after_a_grace(
    fake, make_batch, enqueued, settings
):
    settings.BATCH_SLICES_PER_BATCH = 2
    fake.configure(latency_ms=6000)
    batch = make_batch(rows(12), concurrency=4)

    first = BackgroundSlice(batch.pk, budget_s=1)
    wait_for(lambda: fake.stats.in_flight == 2)
    second = BackgroundSlice(batch.pk, budget_s=1)
    wait_for(lambda: fake.stats.in_flight == 4)
    held = {s: len(s.slice.inflight) for s in (first, second)}
    assert sorted(held.values()) == [2, 2]  # each slice its share of the concurrency

    fake.configure(latency_ms=0)
    first.join()
    second.join()
    fake.configure(latency_ms=6000)
    fake.reset()
    alone = BackgroundSlice(batch.pk, budget_s=10)
    wait_for(lambda: fake.stats.in_flight == 2)
    # Alone on the batch for longer than the grace, it takes the other slice's share too.
    wait_for(lambda: fake.stats.in_flight == 4, timeout=engine.ALONE_GRACE_S + 5)
    alone.slice._stopping = True  # stop claiming; the rows in flight finish
    fake.configure(latency_ms=0)
    alone.join()


def test_a_claim_skips_batches_at_their_cap_or_with_nothing_pending_in_a_few_queries(
        make_batch, enqueued, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0  # no cap on active batches
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    capped = [make_batch(rows(2), concurrency=1) for _ in range(30)]
    drained = make_batch(rows(1), concurrency=5)
    first = engine_db.claim_rows(40, lease_s=30)
    assert sorted(row.batch.id for row in first) == sorted([b.pk for b in capped] + [drained.pk])
    fresh = make_batch(rows(4), concurrency=3)

    others: dict[int, int] = {}
    with CaptureQueriesContext(connection) as queries:
        claimed = engine_db.claim_rows(40, lease_s=30, others=others)

    # Only the batch with room and pending rows is claimed from, in one transaction; the 30
    # capped batches and the drained one cost no transaction of their own.
    assert claimed and {row.batch.id for row in claimed} == {fresh.pk}
    assert len(queries) < 25, [q["sql"][:80] for q in queries]
    # Their rows running elsewhere are still reported (the slice's "alone" bookkeeping).
    assert all(others[b.pk] == 1 for b in capped) and others[drained.pk] == 1


def _claim_in_queries(limit: int, **kwargs) -> tuple[list[engine_db.ClaimedRow], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        claimed = engine_db.claim_rows(limit, lease_s=30, **kwargs)
    return claimed, len(queries)


def _per_batch(claimed: list[engine_db.ClaimedRow]) -> dict[int, list[int]]:
    got: dict[int, list[int]] = {}
    for row in claimed:
        got.setdefault(row.batch.id, []).append(row.index)
    return got


def test_a_claim_over_many_simple_batches_takes_the_same_few_queries_however_many_there_are(
        make_batch, enqueued, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0  # no cap on active batches
    settings.BATCH_SLICES_PER_BATCH = 1  # one slice may fill a batch's concurrency

    first = [make_batch(rows(3), concurrency=2) for _ in range(20)]
    claimed_20, queries_20 = _claim_in_queries(500)
    more = [make_batch(rows(3), concurrency=2) for _ in range(60)]
    claimed_60, queries_60 = _claim_in_queries(500)

    # Each batch gives its first rows up to its concurrency, once.
    assert _per_batch(claimed_20) == {b.pk: [0, 1] for b in first}
    assert _per_batch(claimed_60) == {b.pk: [0, 1] for b in more}
    # One batch at a time this was some 8 queries per batch (160 and 480). The first claim also
    # reads the owner's monthly limit, which later claims find cached.
    assert queries_60 <= queries_20 <= 15
    assert len({row.token for row in claimed_60}) == 1
    for batch in more:
        batch.refresh_from_db()
        assert batch.status == Batch.Status.RUNNING and batch.started_at
        assert batch.slice_heartbeat_at
        assert batch.status_counts()["running"] == 2


def test_a_small_claim_over_many_batches_locks_and_searches_only_the_batches_it_draws_from(
        make_batch, enqueued, settings, monkeypatch):
    from batches.engine import pick

    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    settings.BATCH_SLICES_PER_BATCH = 1
    small = [make_batch(rows(3), concurrency=2) for _ in range(60)]
    running_elsewhere = engine_db.claim_rows(1, lease_s=30)  # another slice runs small[0]'s row 0
    locked, searched = [], []

    def lock(batch_ids):
        locked.append(list(batch_ids))
        return lock_simple(batch_ids)

    def search(wanted, now):
        searched.append(dict(wanted))
        return claimable_ids(wanted, now)

    lock_simple, claimable_ids = engine_db._lock_simple, pick.claimable_ids
    monkeypatch.setattr(engine_db, "_lock_simple", lock)
    monkeypatch.setattr(pick, "claimable_ids", search)
    others: dict[int, int] = {}
    claimed = engine_db.claim_rows(3, lease_s=30, others=others)

    # A window of 3 over 60 batches: one row each from the oldest with room.
    assert running_elsewhere[0].batch.id == small[0].pk
    assert _per_batch(claimed) == {small[0].pk: [1], small[1].pk: [0], small[2].pk: [0]}
    # The claim locked and searched the batches for at most twice the rows asked for (slack
    # for counts gone stale), not all 60.
    assert len(locked) == 1 and 3 <= len(locked[0]) <= 6
    assert len(searched) == 1 and set(searched[0]) <= set(locked[0])
    # The batches it did not lock still report the rows other slices run.
    assert others[small[0].pk] == 1 and all(others.get(b.pk, 0) == 0 for b in small[1:])


def test_a_fused_claim_shares_the_window_fairly_then_gives_the_rest_to_the_oldest(
        make_batch, enqueued, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    settings.BATCH_SLICES_PER_BATCH = 1
    short = make_batch(rows(1), concurrency=10)  # the oldest, but one row only
    big = [make_batch(rows(20), concurrency=10) for _ in range(2)]
    low = make_batch(rows(5), concurrency=10, priority="low")

    # A window of 12 over three batches of one priority: 4 each; the short batch has one row,
    # so the oldest batch with rows left takes the rest; the low-priority batch waits.
    first = _per_batch(engine_db.claim_rows(12, lease_s=30))
    assert first == {short.pk: [0], big[0].pk: list(range(7)), big[1].pk: [0, 1, 2, 3]}

    # Held rows count against the share: a window of 12 + 11 held over the two batches with
    # rows left is 12 each, but their concurrency lets them add only 3 and 6; the low-priority
    # batch gets what is left.
    held = {big[0].pk: 7, big[1].pk: 4}
    second = _per_batch(engine_db.claim_rows(12, lease_s=30, held=held))
    assert second == {big[0].pk: [7, 8, 9], big[1].pk: [4, 5, 6, 7, 8, 9], low.pk: [0, 1, 2]}


def test_special_batches_keep_their_rules_beside_a_fused_claim(make_batch, enqueued, settings,
                                                               prices):
    from batches.costs import to_nanos

    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    settings.BATCH_SLICES_PER_BATCH = 1
    plain = [make_batch(rows(4), concurrency=4) for _ in range(3)]
    talk = make_batch(conversation_rows(), prompt="{{text}}", conversation_column="conv",
                      concurrency=8)
    capped = make_batch(rows(10), concurrency=10, budget=Decimal("0.001"))

    claimed = engine_db.claim_rows(100, lease_s=30)

    got = _per_batch(claimed)
    assert all(got[b.pk] == [0, 1, 2, 3] for b in plain)
    # Only the first turn of each conversation (and the rows of none) may run.
    assert got[talk.pk] == [0, 1, 3, 6]
    # The budget's rows are reserved for, and no more than it covers are claimed.
    budgeted = [row for row in claimed if row.batch.id == capped.pk]
    assert budgeted and all(row.reserved > 0 and row.budget_keys for row in budgeted)
    assert sum(row.reserved for row in budgeted) <= to_nanos(capped.budget)
    assert all(row.reserved == 0 and not row.budget_keys
               for row in claimed if row.batch.id != capped.pk)
