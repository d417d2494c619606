"""Columns batches are costed for every call they make: a repair is a second, billed call, and
an answer that fails validation was still answered and billed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batches import costs
from batches.models import MonthlySpend
from batches.providers import Response
from tests.helpers import costs as cost_helpers
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

prices = cost_helpers.prices
fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

FIELDS = [
    {"name": "sentiment", "type": "enum", "values": ["positive", "mixed", "negative"]},
    {"name": "score", "type": "integer"},
]


def answer(prompt_tokens: int, output_tokens: int) -> Response:
    return Response(text="{}", finish_reason="STOP", prompt_tokens=prompt_tokens,
                    output_tokens=output_tokens, model_version="m")


def row_price(row) -> Decimal:
    price = costs.price_for(row.batch.model_name)
    return price.cost(prompt=row.prompt_tokens, candidates=row.output_tokens,
                      thoughts=row.thoughts_tokens or 0, cached=row.cached_tokens or 0)


@pytest.mark.django_db
@pytest.mark.usefixtures("prices")
def test_each_call_of_an_answer_is_priced_on_its_own_prompt_length():
    # Two 150,000-token calls: each is under Gemini 2.5 Pro's 200,000-token long-context
    # threshold, so neither pays the long prices that their 300,000 tokens together would.
    calls = (answer(150_000, 100), answer(150_000, 100))
    one = costs.answer_cost("gemini-2.5-pro", calls[0])
    assert costs.calls_cost("gemini-2.5-pro", calls) == 2 * one
    assert one == Decimal("0.188500000")  # 150,000 x $1.25 + 100 x $10 per million
    assert costs.calls_cost("no-such-model", calls) is None  # price unknown, never $0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("prices")
def test_a_repaired_answer_costs_both_calls_and_the_batch_adds_them(fake, make_batch, enqueued):
    fake.configure(json_invalid_once=["#bad-once"])
    batch = make_batch(rows=[{"text": "#bad-once here"}], output_fields=FIELDS, max_retries=0)
    plain = make_batch(rows=[{"text": "#bad-once here"}], output_fields=FIELDS)

    run_until_done(batch)
    run_until_done(plain)

    repaired = plain.results.get()
    assert (repaired.status, repaired.attempts) == ("succeeded", 2)
    # Both calls' tokens are on the row, and its cost is what they cost.
    unrepaired = batch.results.get()
    assert unrepaired.status == "failed"  # no retry left for a repair: failed at once
    assert repaired.prompt_tokens > unrepaired.prompt_tokens
    assert repaired.cost == row_price(repaired) > unrepaired.cost > 0
    plain.refresh_from_db()
    assert plain.cost_spent == repaired.cost and plain.costed_rows == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("prices")
def test_an_answer_that_fails_validation_is_still_costed(fake, make_batch, enqueued):
    fake.configure(json_invalid_always=["#bad-always"])
    batch = make_batch(rows=[{"text": "fine"}, {"text": "#bad-always"}], output_fields=FIELDS)

    run_until_done(batch)

    rows = {r.index: r for r in batch.results.all()}
    failed = rows[1]
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert failed.prompt_tokens and failed.output_tokens
    assert failed.cost == row_price(failed) > 0
    batch.refresh_from_db()
    assert batch.costed_rows == 2
    assert batch.cost_spent == rows[0].cost + failed.cost
    assert batch.prompt_tokens == rows[0].prompt_tokens + failed.prompt_tokens
    assert MonthlySpend.objects.get(user=batch.owner).spent == batch.cost_spent
