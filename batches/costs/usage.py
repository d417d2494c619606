"""What answers cost: one answer's price from the usage Gemini reports, and the sums a bulk
write adds to its batches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from batches.costs.money import to_nanos
from batches.costs.prices import price_for
from batches.providers import Response


def answer_cost(model: str, response: Response, at: datetime | None = None, *,
                batch_mode: bool = False) -> Decimal | None:
    """The answer's cost at the price valid at `at` (the batch-mode price for an answer from a
    Batch Mode job); None when the model has no price."""
    price = price_for(model, at)
    if price is None:
        return None
    return price.cost(prompt=response.prompt_tokens or 0, candidates=response.output_tokens or 0,
                      thoughts=response.thoughts_tokens or 0,
                      cached=response.cached_tokens or 0, batch_mode=batch_mode)


def calls_cost(model: str, responses: Sequence[Response],
               at: datetime | None = None, *, batch_mode: bool = False) -> Decimal | None:
    """What every call behind one answer cost (a structured-output repair is a second call,
    billed on its own: each call is priced by its own prompt length); None: price unknown."""
    costs = [answer_cost(model, r, at, batch_mode=batch_mode) for r in responses]
    return None if any(c is None for c in costs) else sum(costs, Decimal(0))


def _totals() -> dict:
    return {"cost": Decimal(0), "costed": 0, "unpriced": 0, "thoughts": 0, "cached": 0}


@dataclass
class Spend:
    """The answers one bulk write stored: nanos per row (to settle reservations) and totals per
    batch (for the running totals)."""

    row_costs: dict[int, int] = field(default_factory=dict)
    per_batch: dict[int, dict] = field(default_factory=lambda: defaultdict(_totals))
    per_owner: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def add(self, row_id: int, batch_id: int, owner_id: int, cost: Decimal | None,
            thoughts: int, cached: int) -> None:
        totals = self.per_batch[batch_id]
        if cost is None:
            totals["unpriced"] += 1
            self.row_costs[row_id] = 0
        else:
            totals["cost"] += cost
            totals["costed"] += 1
            self.row_costs[row_id] = to_nanos(cost)
            self.per_owner[owner_id] += cost
        totals["thoughts"] += thoughts
        totals["cached"] += cached

    def batch_totals(self, batch_id: int) -> dict:
        """What to add to the batch's running totals (Batch field -> amount; zeros if none)."""
        t = self.per_batch.get(batch_id) or _totals()
        return {"cost_spent": t["cost"], "costed_rows": t["costed"],
                "unpriced_rows": t["unpriced"], "thoughts_tokens": t["thoughts"],
                "cached_tokens": t["cached"]}
