"""Spend and budgets through the engine in this process (real google-genai, the fake server)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from batches import costs, services
from batches.models import Batch, BudgetLedger, MonthlySpend, UserBudget
from tests.helpers import costs as cost_helpers
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued
prices = cost_helpers.prices

# The slice's database thread must see the test's rows: real commits.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("prices")]

# "Say: row 7" is 3 prompt tokens and "ECHO: Say: row 7" 4 output tokens at the fake; at
# gemini-2.5-flash's seeded $0.30 / $2.50 per million tokens that is $0.0000109 a row.
ROW_COST = Decimal("0.0000109")


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def test_each_row_records_its_tokens_and_cost_and_the_batch_keeps_the_totals(fake, make_batch,
                                                                              enqueued):
    batch = run_until_done(make_batch(rows(10)))

    assert batch.status == Batch.Status.COMPLETED
    assert set(batch.results.values_list("prompt_tokens", "output_tokens", "cost")) == {
        (3, 4, ROW_COST)}
    assert batch.cost_spent == 10 * ROW_COST and batch.costed_rows == 10
    assert batch.results.aggregate(s=Sum("cost"))["s"] == batch.cost_spent
    assert MonthlySpend.objects.get(user=batch.owner).spent == 10 * ROW_COST


def test_thinking_tokens_are_recorded_and_paid_as_output(fake, make_batch, enqueued):
    fake.configure(thinking_tokens=300)
    thinking = run_until_done(make_batch(rows(4), thinking="default"))
    capped = run_until_done(make_batch(rows(4), thinking="100"))
    off = run_until_done(make_batch(rows(4), thinking="off"))

    assert set(thinking.results.values_list("thoughts_tokens", flat=True)) == {300}
    assert thinking.thoughts_tokens == 1200
    assert thinking.cost_spent == 4 * (ROW_COST + Decimal("0.00075"))
    assert set(capped.results.values_list("thoughts_tokens", flat=True)) == {100}
    assert set(off.results.values_list("thoughts_tokens", flat=True)) == {None}
    assert off.cost_spent == 4 * ROW_COST


def test_a_model_without_a_price_counts_unpriced_rows_instead_of_zero(fake, make_batch,
                                                                       enqueued, settings):
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-9-unpriced"]
    batch = run_until_done(make_batch(rows(3), model="gemini-9-unpriced"))

    assert batch.status == Batch.Status.COMPLETED
    assert batch.unpriced_rows == 3 and batch.costed_rows == 0
    assert set(batch.results.values_list("cost", flat=True)) == {None}


def test_a_batch_pauses_at_its_budget_and_goes_on_when_it_is_raised(fake, make_batch, enqueued):
    budget = 20 * ROW_COST
    batch = run_until_done(make_batch(rows(50), budget=budget, concurrency=8))

    assert batch.status == Batch.Status.PAUSED and batch.paused
    assert batch.cost_spent <= budget
    assert batch.cost_spent > budget - 2 * ROW_COST  # it used the budget, not a fraction
    assert batch.last_error == (f"Budget reached: {costs.format_money(batch.cost_spent)} of "
                                "$0.000218 spent; raise the budget to continue.")
    assert batch.results.filter(status="running").count() == 0

    services.batch_set_budget(batch=batch, budget="1.00")
    batch = run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED and batch.last_error == ""
    assert batch.cost_spent == 50 * ROW_COST
    assert batch.results.aggregate(s=Sum("cost"))["s"] == batch.cost_spent


def test_a_small_budget_still_runs_one_row_to_learn_the_real_cost(fake, make_batch, enqueued):
    # The guess before any answer (512 output tokens a row) is far above this budget.
    batch = run_until_done(make_batch(rows(10), budget=3 * ROW_COST))

    assert batch.paused
    assert batch.cost_spent == 3 * ROW_COST


def test_a_budget_on_a_model_without_a_price_pauses_and_says_why(fake, make_batch, enqueued,
                                                                  settings):
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-9-unpriced"]
    batch = run_until_done(make_batch(rows(3), model="gemini-9-unpriced", budget="1"))

    assert batch.paused and batch.cost_spent == 0
    assert "price of gemini-9-unpriced is unknown" in batch.last_error


def test_the_monthly_limit_holds_across_a_users_batches(fake, make_batch, enqueued, user):
    UserBudget.objects.create(user=user, monthly_limit=30 * ROW_COST)
    first = run_until_done(make_batch(rows(20)))
    # The same prompts again: only answers the model is asked for again cost money.
    second = run_until_done(make_batch(rows(20), use_cache=False))

    assert first.status == Batch.Status.COMPLETED
    assert second.paused
    assert second.last_error.startswith("Monthly budget reached: $0.000327 of $0.000327 spent")
    assert costs.month_spent(user.pk) == 30 * ROW_COST


def test_the_site_default_monthly_limit_applies_without_an_operator_setting(
        fake, make_batch, enqueued, settings, user):
    settings.USER_MONTHLY_BUDGET = str(5 * ROW_COST)
    batch = run_until_done(make_batch(rows(10)))

    assert batch.paused and costs.month_spent(user.pk) == 5 * ROW_COST


def test_a_reservation_of_a_dead_worker_expires_with_its_lease(fake, make_batch, enqueued):
    from batches.engine import db

    batch = make_batch(rows(10), budget=10 * ROW_COST)
    claimed = db.claim_batch_rows(batch.pk, 4, lease_s=30)  # a worker claims, then dies
    assert claimed and BudgetLedger.objects.get(key=f"batch:{batch.pk}").holds

    # While its lease runs the reservation stands: another worker gets nothing.
    assert db.claim_batch_rows(batch.pk, 4, lease_s=30) == []
    assert not Batch.objects.get(pk=batch.pk).paused  # its rows are in flight: it waits
    batch.results.filter(status="running").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    ledger = BudgetLedger.objects.get(key=f"batch:{batch.pk}")
    ledger.holds = {t: [n, 0.0] for t, (n, _) in ledger.holds.items()}  # the lease's end
    ledger.save()
    batch.results.release_expired_leases()
    batch = run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED
    assert batch.cost_spent == 10 * ROW_COST


def test_a_worker_killed_right_after_its_write_commits_leaves_the_spend_in_the_ledger(
        make_batch, enqueued, monkeypatch):
    """The write's spend and the ledger's settle commit together (database ledger): a worker
    that dies after the commit cannot leave answers paid for in the batch but not in the
    ledger, whose reservation would expire with the lease and free the budget again."""
    from contextlib import contextmanager

    from django.db import transaction

    from batches.engine import db
    from batches.providers import Response

    class Killed(Exception):
        pass

    @contextmanager
    def dies_after_commit():
        with transaction.atomic():
            yield
        raise Killed  # SIGKILL between the commit and whatever came after it

    batch = make_batch(rows(4), budget=4 * ROW_COST)
    claimed = db.claim_batch_rows(batch.pk, 2, lease_s=30)  # before any answer: one probe row
    assert claimed and BudgetLedger.objects.get(key=f"batch:{batch.pk}").holds
    monkeypatch.setattr(db, "transaction", type("T", (), {"atomic": dies_after_commit}))
    answers = [db.Outcome(row, db.Kind.SUCCEEDED, latency_ms=5,
                          response=Response(f"ECHO: {row.prompt}", "STOP", 3, 4, "m"))
               for row in claimed]

    with pytest.raises(Killed):
        db.write_outcomes(answers)

    batch.refresh_from_db()
    assert batch.cost_spent == len(claimed) * ROW_COST
    ledger = BudgetLedger.objects.get(key=f"batch:{batch.pk}")
    assert ledger.spent_nanos == costs.to_nanos(batch.cost_spent)
    assert ledger.holds == {}
