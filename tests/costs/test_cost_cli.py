"""Cost from the command line: batch_run --estimate, batch_budget, batch_status's spend."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from batches.models import Batch
from tests.helpers import costs as cost_helpers

prices = cost_helpers.prices

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("prices")]


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_batch_run_estimate_prints_the_estimate_and_creates_nothing(tmp_path, user, settings):
    settings.GEMINI_API_KEY = ""  # no countTokens: the fallback rule, said so
    path = tmp_path / "rows.csv"
    path.write_text("text\n" + "".join(f"review number {i}\n" for i in range(50)))

    out = run("batch_run", str(path), "--prompt", "Rate: {{text}}", "--owner", "alice",
              "--max-output-tokens", "5", "--estimate")

    assert out.startswith("Estimate for 50 rows on gemini-2.5-flash")
    assert "about 4 characters per token" in out and "in batch mode" in out
    assert "countTokens was not available" in out
    assert Batch.objects.count() == 0


def test_batch_budget_raises_the_budget_and_a_paused_batch_goes_on(make_batch, monkeypatch):
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)
    batch = make_batch(budget="0.01")
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.PAUSED, paused=True, cost_spent=Decimal("0.01"),
        last_error="Budget reached: $0.01 of $0.01 spent; raise the budget to continue.")

    out = run("batch_budget", str(batch.pk), "2.50")

    batch.refresh_from_db()
    assert batch.budget == Decimal("2.5") and not batch.paused and batch.last_error == ""
    assert f"Batch {batch.pk}: budget $2.50; spent so far $0.01" in out


def test_batch_budget_names_a_bad_amount(make_batch):
    batch = make_batch()
    with pytest.raises(CommandError, match="not an amount of money"):
        run("batch_budget", str(batch.pk), "lots")


def test_batch_status_shows_the_spend_the_rest_and_the_month(make_batch, monkeypatch):
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)
    batch = make_batch(budget="1")
    out = run("batch_status", str(batch.pk))
    assert "Spent:     $0.00 of a $1.00 budget" in out
    assert "Rest:      about $" in out and "for 3 rows left (an estimate)" in out
    assert "Owner:     $0.00 this month (no monthly limit)" in out
