"""Budgets in real `qcluster` processes: a batch budget and a user's monthly limit hold across
workers, with the row costs adding up to the totals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from batches import costs, engine, services
from batches.engine import tasks
from batches.fake_gemini import FakeGemini
from batches.models import Batch, BatchResult, BudgetLedger, MonthlySpend, UserBudget
from tests.helpers import costs as cost_helpers
from tests.helpers import workers
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters
prices = cost_helpers.prices

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("prices")]

# Every prompt "Say: row N" is 3 tokens and its answer 4 at the fake: $0.0000109 a row at
# gemini-2.5-flash's seeded prices.
ROW_COST = Decimal("0.0000109")
CENT = Decimal("0.01")


@pytest.fixture
def fake_server():
    with FakeGemini(latency_ms=20, jitter_ms=10) as server:
        yield server


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def _rescue_now() -> None:
    engine.rescue(enqueue=tasks.enqueue_batch)


def test_a_budget_for_1000_of_2000_rows_pauses_the_batch_within_the_rows_in_flight(
        qclusters, fake_server, make_batch):
    concurrency = 32
    budget = 1000 * ROW_COST
    for _ in range(2):
        qclusters.start(fake_server.url, BATCH_SLICE_MAX_INFLIGHT=16)
    batch = make_batch(rows(2000), concurrency=concurrency, budget=budget)
    tasks.enqueue_batch(batch.pk)  # more slices, so that both clusters take part

    batch = wait_for_batch(batch.pk, timeout=120, clusters=qclusters, tick=_rescue_now,
                           poll=0.5, until=lambda b: b.paused)

    assert batch.status == Batch.Status.PAUSED, qclusters.logs()
    assert batch.results.filter(status=BatchResult.Status.RUNNING).count() == 0
    assert batch.cost_spent <= budget + concurrency * ROW_COST
    assert batch.results.filter(status="succeeded").count() >= 1000 - concurrency
    assert batch.last_error == (f"Budget reached: {costs.format_money(batch.cost_spent)} of "
                                f"{costs.format_money(budget)} spent; raise the budget to "
                                "continue.")
    row_total = batch.results.aggregate(s=Sum("cost"))["s"]
    assert row_total.quantize(CENT) == batch.cost_spent.quantize(CENT)
    # To the nano, in fact (SQLite sums decimals in floating point: round that away).
    assert row_total.quantize(costs.money.NANO) == batch.cost_spent

    services.batch_set_budget(batch=batch, budget=2000 * ROW_COST)
    batch = wait_for_batch(batch.pk, timeout=120, clusters=qclusters, tick=_rescue_now,
                           poll=0.5)

    assert batch.status == Batch.Status.COMPLETED, qclusters.logs()
    assert batch.cost_spent == 2000 * ROW_COST
    assert fake_server.stats.total == 2000  # nothing was sent twice along the way
    # The shared ledger settled every answer exactly once, and holds nothing any more.
    ledger = BudgetLedger.objects.get(key=f"batch:{batch.pk}")
    assert ledger.spent_nanos == costs.to_nanos(batch.cost_spent) and ledger.holds == {}


def test_a_killed_worker_reservation_expires_with_its_lease_and_the_budget_holds(
        qclusters, fake_server, make_batch):
    fake_server.configure(latency_ms=300, jitter_ms=50)
    concurrency = 16
    budget = 150 * ROW_COST
    first = qclusters.start(fake_server.url)
    batch = make_batch(rows(400), concurrency=concurrency, budget=budget)
    wait_for_batch(batch.pk, timeout=60, clusters=qclusters,
                   until=lambda b: b.status_counts()["succeeded"] >= 40
                   and b.status_counts()["running"] > 0)

    first.kill()  # its rows stay running, their reservations held, until the leases run out
    assert batch.results.filter(status=BatchResult.Status.RUNNING).exists()
    qclusters.start(fake_server.url)
    batch = wait_for_batch(batch.pk, timeout=90, clusters=qclusters, tick=_rescue_now,
                           poll=0.5, until=lambda b: b.paused)

    assert batch.last_error.startswith("Budget reached:"), qclusters.logs()
    assert budget - 2 * ROW_COST <= batch.cost_spent <= budget + concurrency * ROW_COST
    ledger = BudgetLedger.objects.get(key=f"batch:{batch.pk}")
    assert ledger.spent_nanos == costs.to_nanos(batch.cost_spent)
    assert batch.results.filter(status=BatchResult.Status.RUNNING).count() == 0


def test_the_monthly_limit_holds_for_two_batches_of_one_user_on_two_workers(
        qclusters, fake_server, make_batch, user):
    concurrency = 24
    limit = 600 * ROW_COST
    UserBudget.objects.create(user=user, monthly_limit=limit)
    for _ in range(2):
        qclusters.start(fake_server.url, Q_WORKERS=1)
    first = make_batch(rows(1000), concurrency=concurrency)
    second = make_batch([{"text": f"line {i}"} for i in range(1000)], concurrency=concurrency)

    for batch in (first, second):
        wait_for_batch(batch.pk, timeout=120, clusters=qclusters, tick=_rescue_now, poll=0.5,
                       until=lambda b: b.paused)

    first.refresh_from_db()
    second.refresh_from_db()
    spent = MonthlySpend.objects.get(user=user).spent
    assert spent == first.cost_spent + second.cost_spent
    assert spent <= limit + 2 * concurrency * ROW_COST
    assert spent >= limit - 2 * ROW_COST  # both stopped at the limit, not long before it
    assert first.cost_spent > 0 and second.cost_spent > 0  # both ran on the shared limit
    for batch in (first, second):
        assert batch.last_error.startswith("Monthly budget reached:"), batch.last_error
        assert batch.results.filter(status=BatchResult.Status.RUNNING).count() == 0
    rows_total = BatchResult.objects.filter(batch__owner=user).aggregate(s=Sum("cost"))["s"]
    assert rows_total.quantize(CENT) == spent.quantize(CENT)
