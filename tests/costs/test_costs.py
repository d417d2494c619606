"""Prices, answer costs, money and the budget ledger rules (no engine)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from batches import costs
from batches.costs.store import DatabaseStore, Ledger
from batches.models import ModelPrice
from batches.providers import Response
from tests.helpers import costs as cost_helpers

prices = cost_helpers.prices

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("prices")]


def test_the_migration_seeds_a_price_for_every_configured_model(settings):
    for model in settings.GEMINI_MODELS:
        price = costs.price_for(model)
        assert price is not None, model
        assert price.currency == "USD" and price.batch_discount_percent == 50


def test_an_answer_costs_prompt_output_and_thinking_at_their_prices():
    price = costs.price_for("gemini-2.5-flash")  # $0.30 in, $2.50 out (thinking as output)
    assert price.cost(prompt=1_000_000) == Decimal("0.30")
    assert price.cost(prompt=3, candidates=4) == Decimal("0.000010900")
    assert price.cost(prompt=3, candidates=4, thoughts=100) == Decimal("0.000260900")
    assert price.cost(prompt=1_000_000, cached=1_000_000) == Decimal("0.03")
    assert price.cost(prompt=1_000_000, batch_mode=True) == Decimal("0.15")


def test_long_prompts_pay_the_long_context_prices():
    price = costs.price_for("gemini-2.5-pro")
    assert price.cost(prompt=200_000) == Decimal("0.25")
    # $2.50 and $15 per million above 200,000 prompt tokens.
    assert price.cost(prompt=200_001, candidates=1_000) == Decimal("0.515002500")


def test_the_price_valid_at_the_time_applies():
    now = timezone.now()
    ModelPrice.objects.create(model="m", valid_from=now - timedelta(days=10),
                              input_per_million=1, output_per_million=1)
    ModelPrice.objects.create(model="m", valid_from=now - timedelta(days=1),
                              input_per_million=2, output_per_million=2)
    assert costs.price_for("m", now - timedelta(days=5)).input == 1
    assert costs.price_for("m", now).input == 2
    assert costs.price_for("m", now - timedelta(days=20)) is None


def test_a_model_without_a_price_costs_nothing_known_rather_than_zero():
    response = Response("x", "STOP", 3, 4, "unknown-model")
    assert costs.answer_cost("unknown-model", response) is None
    assert costs.format_money(None) == "price unknown"


def test_money_reads_as_people_expect():
    assert costs.format_money(Decimal("4.98")) == "$4.98"
    assert costs.format_money(Decimal("1234.5")) == "$1,234.50"
    assert costs.format_money(Decimal("0.0000109")) == "$0.000011"
    assert costs.format_money(Decimal(0)) == "$0.00"
    assert costs.parse_amount("$5") == Decimal("5")
    with pytest.raises(ValueError, match="not an amount"):
        costs.parse_amount("five")
    with pytest.raises(ValueError, match="not an amount"):
        costs.parse_amount("-1")
    assert costs.to_nanos(Decimal("0.0000109")) == 10_900
    assert costs.from_nanos(10_900) == Decimal("0.000010900")


def test_expired_holds_no_longer_count():
    ledger = Ledger("k", 0, {"a": [100, 10.0], "b": [50, 20.0]})
    ledger.prune(15.0)
    assert ledger.held() == 50


def test_the_database_store_keeps_spent_and_holds_between_transactions():
    store = DatabaseStore()

    def reserve(ledgers, now):
        ledgers["batch:1"].holds["t"] = [500, now + 60]
        ledgers["batch:1"].spent += 7

    store.transact(["batch:1"], reserve)
    ledger = store.read(["batch:1"])["batch:1"]
    assert ledger.spent == 7 and ledger.held() == 500
