"""Budgets: a claim reserves each row's expected cost in the shared store, the write settles it
with the real cost, and an expired lease releases it (store.py).

Two kinds of budget, enforced alike: a batch's `budget`, and a user's calendar-month limit
(`UserBudget.monthly_limit`, else settings.USER_MONTHLY_BUDGET), across all of their batches.
A claim gets only as many rows as every budget it falls under can cover with spent + reserved;
when a budget cannot cover one more row and none of the batch's rows is in flight, the batch
pauses with a message saying why. Overshoot is bounded by the rows in flight when the budget
was reached, times how much each cost above what was reserved for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from batches.costs.money import format_money, from_nanos, to_nanos
from batches.costs.prices import Price, price_for
from batches.costs.store import Ledger, get_store
from batches.models import Batch, MonthlySpend, UserBudget

CHARS_PER_TOKEN = 4  # the fallback rule where no tokenizer is at hand
OUTPUT_GUESS_TOKENS = 512  # expected answer length before any row has been answered
LIMIT_CACHE_S = 5.0
# Thinking tokens a row may spend, per thinking option, where the model decides (a guess to
# reserve against until real answers are in).
THINKING_GUESS_TOKENS = {"off": 0, "low": 1024, "default": 8192}


@dataclass(frozen=True)
class Limit:
    key: str
    amount: int  # nanos
    floor: int  # nanos spent as the database knows it (the store may have lost its copy)
    kind: str  # "batch" or "month"
    label: str = ""  # the month, for messages


@dataclass(frozen=True)
class ClaimBudget:
    rows: int
    per_row: int = 0  # nanos reserved per row
    keys: tuple[str, ...] = ()
    pause_message: str = ""


def month_start(at: datetime | None = None) -> date:
    at = timezone.localtime(at or timezone.now())
    return at.date().replace(day=1)


def month_key(user_id: int, at: datetime | None = None) -> str:
    return f"user:{user_id}:{month_start(at):%Y-%m}"


_limit_lock = threading.Lock()
_limit_cache: dict[int, tuple[float, Decimal | None]] = {}


def monthly_limit(user_id: int, *, cached: bool = False) -> Decimal | None:
    """The user's limit: their UserBudget row if an operator set one, else the site default."""
    return monthly_limits([user_id], cached=cached)[user_id]


def monthly_limits(user_ids: Iterable[int], *, cached: bool = False) -> dict[int, Decimal | None]:
    """monthly_limit of several users; those not cached are read in one query."""
    now = time.monotonic()
    found: dict[int, Decimal | None] = {}
    missing = set(user_ids)
    if cached:
        with _limit_lock:
            for user_id in list(missing):
                hit = _limit_cache.get(user_id)
                if hit and now - hit[0] < LIMIT_CACHE_S:
                    found[user_id] = hit[1]
                    missing.discard(user_id)
    if not missing:
        return found
    rows = dict(UserBudget.objects.filter(user_id__in=missing)
                .values_list("user_id", "monthly_limit"))
    default = getattr(settings, "USER_MONTHLY_BUDGET", None)
    for user_id in missing:
        limit = rows[user_id] if user_id in rows else default
        found[user_id] = Decimal(limit) if limit is not None else None
    with _limit_lock:
        _limit_cache.update((user_id, (now, found[user_id])) for user_id in missing)
    return found


def budgeted(batches: Iterable[tuple[int, Decimal | None, int]]) -> set[int]:
    """Of (batch id, batch budget, owner id), the batches a claim must reserve against a budget
    for (claim_budget's limits); the others' claims need no reservation and no I/O of costs.
    The owners' monthly limits are read in at most one query."""
    batches = list(batches)
    limits = monthly_limits({owner_id for _, _, owner_id in batches}, cached=True)
    return {batch_id for batch_id, budget, owner_id in batches
            if budget is not None or limits[owner_id] is not None}


def month_spent(user_id: int, at: datetime | None = None) -> Decimal:
    row = MonthlySpend.objects.filter(user_id=user_id, month=month_start(at)).first()
    return row.spent if row is not None else Decimal(0)


def limits_for(batch: Batch) -> list[Limit]:
    found = []
    if batch.budget is not None:
        found.append(Limit(f"batch:{batch.pk}", to_nanos(batch.budget),
                           to_nanos(batch.cost_spent), "batch"))
    limit = monthly_limit(batch.owner_id, cached=True)
    if limit is not None:
        now = timezone.now()
        found.append(Limit(month_key(batch.owner_id, now), to_nanos(limit),
                           to_nanos(month_spent(batch.owner_id, now)), "month",
                           f"{month_start(now):%B %Y}"))
    return found


def thinking_guess(thinking: str) -> int:
    if thinking.isdigit():
        return int(thinking)
    return THINKING_GUESS_TOKENS.get(thinking, THINKING_GUESS_TOKENS["default"])


def expected_row_cost(batch: Batch, price: Price) -> Decimal:
    """What to reserve per row: the batch's average so far, else a generous guess."""
    if batch.costed_rows:
        return batch.cost_spent / batch.costed_rows
    chars = batch.prompt_chars / batch.total_rows if batch.total_rows else 0
    prompt = math.ceil((chars + len(batch.system_instruction)) / CHARS_PER_TOKEN)
    output = batch.max_output_tokens or OUTPUT_GUESS_TOKENS
    return price.cost(prompt=prompt, candidates=output, thoughts=thinking_guess(batch.thinking),
                      batch_mode=batch.mode == "batch")


def budget_message(spent: Decimal, budget: Decimal, currency: str = "USD") -> str:
    return (f"Budget reached: {format_money(spent, currency)} of "
            f"{format_money(budget, currency)} spent; raise the budget to continue.")


def monthly_message(spent: Decimal, limit: Decimal, month: str, currency: str = "USD") -> str:
    return (f"Monthly budget reached: {format_money(spent, currency)} of "
            f"{format_money(limit, currency)} spent in {month}; resume once an operator has "
            "raised your monthly limit.")


BUDGET_MESSAGE_PREFIXES = ("Budget reached:", "Monthly budget reached:",
                           "The budget cannot be kept:")


def claim_budget(batch: Batch, *, n: int, token: str, expires_at: float,
                 running: int) -> ClaimBudget:
    """How many of `n` rows the batch's budgets allow, with their reservation made.

    No budget applies: all n, no I/O. Called inside the claim's transaction, batch row locked."""
    limits = limits_for(batch)
    if not limits:
        return ClaimBudget(n)
    price = price_for(batch.model_name)
    if price is None:
        return ClaimBudget(0, pause_message=(
            f"The budget cannot be kept: the price of {batch.model_name} is unknown. Add it in "
            "the admin (Model prices) or remove the budget, then resume."))
    per_row = max(1, to_nanos(expected_row_cost(batch, price), up=True))
    # Before any answer the cost is a guess; if the guess does not fit, one row alone may go,
    # holding all that is left, so that a small budget still learns the real cost.
    may_probe = not batch.costed_rows and not running

    def reserve(ledgers: dict[str, Ledger], now: float):
        left, spent = [], []
        for limit in limits:
            ledger = ledgers[limit.key]
            ledger.prune(now)
            # The database's figure covers a store that lost its copy (Redis restarted). It is
            # never written back: it may include answers whose settle is yet to add them.
            spent.append(max(ledger.spent, limit.floor))
            left.append(limit.amount - spent[-1] - ledger.held())
        granted, each = max(0, min([n, *(room // per_row for room in left)])), per_row
        if not granted and may_probe and min(left) > 0:
            granted, each = 1, min(left)
        if granted:
            for limit in limits:
                ledgers[limit.key].holds[token] = [granted * each, expires_at]
        tightest = min(range(len(limits)), key=lambda i: left[i])
        return granted, each, limits[tightest], spent[tightest]

    granted, each, tightest, spent = get_store().transact([lim.key for lim in limits], reserve)
    keys = tuple(lim.key for lim in limits)
    if granted:
        return ClaimBudget(granted, each, keys)
    if running:
        return ClaimBudget(0)  # rows in flight may settle for less than reserved: wait for them
    if tightest.kind == "batch":
        message = budget_message(from_nanos(spent), from_nanos(tightest.amount), price.currency)
    else:
        message = monthly_message(from_nanos(spent), from_nanos(tightest.amount),
                                  tightest.label, price.currency)
    return ClaimBudget(0, pause_message=message)


def trim(claim: ClaimBudget, token: str, rows: int) -> None:
    """Fewer rows were claimed than reserved for: give back the rest."""
    if not claim.keys or rows >= claim.rows:
        return
    release(claim.keys, token, (claim.rows - rows) * claim.per_row)


def release(keys: Iterable[str], token: str, nanos: int) -> None:
    settle([(tuple(keys), token, nanos, 0)])


def settle(entries: list[tuple[tuple[str, ...], str, int, int]]) -> None:
    """Each entry: (budget keys, claim token, nanos reserved to release, nanos really spent)."""
    entries = [e for e in entries if e[0]]
    if not entries:
        return

    def apply(ledgers: dict[str, Ledger], now: float) -> None:
        for keys, token, released, actual in entries:
            for key in keys:
                ledger = ledgers[key]
                hold = ledger.holds.get(token)
                if hold is not None:
                    hold[0] = int(hold[0]) - released
                    if hold[0] <= 0:
                        del ledger.holds[token]
                ledger.spent += actual
            # Expired holds of dead workers go as well.
        for ledger in ledgers.values():
            ledger.prune(now)

    get_store().transact(sorted({k for e in entries for k in e[0]}), apply)


def renew(keys: Iterable[str], tokens: Iterable[str], expires_at: float) -> None:
    """The leases were renewed: so are their reservations."""
    keys, tokens = sorted(set(keys)), {str(t) for t in tokens}
    if not keys or not tokens:
        return

    def extend(ledgers: dict[str, Ledger], now: float) -> None:
        for ledger in ledgers.values():
            for token in tokens & set(ledger.holds):
                ledger.holds[token][1] = expires_at

    get_store().transact(keys, extend)


def add_monthly_spend(per_owner: dict[int, Decimal], now: datetime) -> None:
    """Add a write's priced answers to their owners' month, inside the write's transaction:
    one statement run per owner (a write of many users' small batches names dozens), in user
    order so that two writes cannot deadlock."""
    month = month_start(now)
    amounts = {user_id: amount for user_id, amount in sorted(per_owner.items()) if amount}
    if not amounts:
        return
    have = set(MonthlySpend.objects.filter(user_id__in=list(amounts), month=month)
               .values_list("user_id", flat=True))
    if missing := [user_id for user_id in amounts if user_id not in have]:
        MonthlySpend.objects.bulk_create(
            [MonthlySpend(user_id=user_id, month=month) for user_id in missing],
            ignore_conflicts=True)  # another write may have made it meanwhile
    field = MonthlySpend._meta.get_field
    quote = connection.ops.quote_name
    spent, user, month_column = (quote(field(name).column) for name in ("spent", "user", "month"))
    month_value = field("month").get_db_prep_save(month, connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {quote(MonthlySpend._meta.db_table)} SET {spent} = {spent} + %s "
            f"WHERE {user} = %s AND {month_column} = %s",
            [(field("spent").get_db_prep_save(amount, connection), user_id, month_value)
             for user_id, amount in amounts.items()])
