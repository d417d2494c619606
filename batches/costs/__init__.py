"""Cost: prices, what each answer cost, the estimate before a run, and budgets.

Modules, lowest first: money (Decimal amounts, nanos, "$4.98" / "price unknown"), prices
(`ModelPrice` lookups, `Price.cost`), store (the shared budget ledgers: database or Redis, like
the rate limiter), budgets (reserve at claim, settle at write, renew with the lease; running
totals and monthly spend), usage (an answer's cost, a bulk write's sums), estimate (countTokens
sample -> tokens, cost range, time), report (spend as the pages, API and CLI show it).

It may import models, prompts and providers. It must never import the engine, services,
exports, web, api, admin or cli: the engine calls into it, not the other way round.

For the engine (inside its claim and write transactions, on its database thread):

    costs.budgeted([(batch.id, batch.budget, batch.owner_id), ...])  # the others: no reservation
    budget = costs.claim_budget(batch, n=n, token=str(token), expires_at=ts, running=running)
    #  -> ClaimBudget(rows, per_row, keys, pause_message): claim at most `rows` rows; a
    #     pause_message pauses the batch. No budget applies: rows == n, no I/O.
    costs.trim(budget, str(token), claimed)        # claimed fewer than reserved
    cost = costs.answer_cost(model, response, at)  # Decimal, or None: price unknown
    cost = costs.calls_cost(model, responses, at)  # every call behind an answer (a repair)
    spend.batch_totals(batch_id)                   # amounts to add to the batch's totals
    costs.add_monthly_spend(spend.per_owner, now)  # the owners' month
    costs.settle([(keys, token, reserved_nanos, actual_nanos), ...])  # after the commit
    costs.renew(keys, tokens, expires_at)          # with the leases

For services and the pages: `estimate(...)`, `batch_spend(batch, rows_left)`,
`user_month(user_id)`, `price_for(model)`, `format_money(amount)`, `parse_amount(text)`.
"""

from batches.costs.budgets import (
    BUDGET_MESSAGE_PREFIXES,
    ClaimBudget,
    add_monthly_spend,
    budget_message,
    budgeted,
    claim_budget,
    month_spent,
    month_start,
    monthly_limit,
    monthly_limits,
    release,
    renew,
    settle,
    trim,
)
from batches.costs.estimate import (
    MAX_COUNT_CALLS,
    Estimate,
    count_tokens,
    earlier_output_per_row,
    estimate,
    parse_thinking,
)
from batches.costs.money import PRICE_UNKNOWN, format_money, from_nanos, parse_amount, to_nanos
from batches.costs.prices import Price, clear_price_cache, price_for
from batches.costs.report import BatchSpend, MonthSpend, batch_spend, user_month
from batches.costs.store import get_store, set_store
from batches.costs.usage import Spend, answer_cost, calls_cost

__all__ = [
    "BUDGET_MESSAGE_PREFIXES", "BatchSpend", "ClaimBudget", "Estimate", "MAX_COUNT_CALLS",
    "MonthSpend", "PRICE_UNKNOWN", "Price", "Spend", "add_monthly_spend", "answer_cost",
    "batch_spend", "budget_message", "budgeted", "calls_cost", "claim_budget", "clear_price_cache",
    "count_tokens",
    "earlier_output_per_row", "estimate", "format_money", "from_nanos", "get_store", "month_spent",
    "month_start", "monthly_limit", "monthly_limits", "parse_amount",
    "parse_thinking", "price_for", "release", "renew", "set_store", "settle", "to_nanos", "trim",
    "user_month",
]
