"""Spend as pages, the API and the CLI show it: so far, the budget, the estimate for the rest,
and a user's month to date against their limit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from batches.costs.budgets import expected_row_cost, month_spent, monthly_limit
from batches.costs.money import format_money
from batches.costs.prices import price_for
from batches.models import Batch


@dataclass(frozen=True)
class BatchSpend:
    spent: Decimal | None  # None: no answer had a known price
    unpriced_rows: int
    budget: Decimal | None
    rest: Decimal | None  # estimated cost of the rows not answered yet
    currency: str = "USD"

    @property
    def spent_text(self) -> str:
        text = format_money(self.spent, self.currency)
        if self.spent is not None and self.unpriced_rows:
            text += f" (+ {self.unpriced_rows:,} answers at an unknown price)"
        return text

    @property
    def budget_text(self) -> str:
        return format_money(self.budget, self.currency) if self.budget is not None else "none"

    @property
    def rest_text(self) -> str:
        return format_money(self.rest, self.currency)

    def as_dict(self) -> dict:
        def money(value: Decimal | None) -> str | None:
            return None if value is None else f"{value:.6f}"

        return {"spent": money(self.spent), "budget": money(self.budget),
                "estimate_rest": money(self.rest), "currency": self.currency,
                "unpriced_rows": self.unpriced_rows, "price_known": self.spent is not None}


def batch_spend(batch: Batch, rows_left: int) -> BatchSpend:
    """The batch's spend from its running totals (no sum over rows)."""
    price = price_for(batch.model_name)
    currency = price.currency if price else "USD"
    answered_unpriced = batch.unpriced_rows and not batch.costed_rows
    spent = None if (price is None and not batch.costed_rows) or answered_unpriced else (
        batch.cost_spent)
    rest = None
    if price is not None:
        rest = (expected_row_cost(batch, price) * rows_left).quantize(Decimal("0.000001"))
    return BatchSpend(spent, batch.unpriced_rows, batch.budget, rest, currency)


@dataclass(frozen=True)
class MonthSpend:
    spent: Decimal
    limit: Decimal | None

    @property
    def text(self) -> str:
        spent = format_money(self.spent)
        if self.limit is None:
            return f"{spent} this month (no monthly limit)"
        return f"{spent} of {format_money(self.limit)} this month"


def user_month(user_id: int) -> MonthSpend:
    return MonthSpend(month_spent(user_id), monthly_limit(user_id))
