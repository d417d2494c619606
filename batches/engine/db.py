"""The engine's database side: claim rows, write outcomes, renew leases.

Everything here is synchronous ORM code that a slice runs on its one database thread. Claims and
writes are short transactions whose row counts decide who got what (see DESIGN.md, Rows and
claims); nothing here reads a row and then writes it on the strength of that read.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.db.models import Exists, F, Min, OuterRef, Q
from django.utils import timezone

from batches import costs, languages, notifications
from batches.engine import pick, reuse, sql
from batches.models import Batch, BatchResult, Mode
from batches.providers import Request, Response

EARLIER_TURN_FAILED = "Not run because an earlier turn failed."
RUNNABLE = (Batch.Status.PENDING, Batch.Status.RUNNING)
PENDING = BatchResult.Status.PENDING
RUNNING = BatchResult.Status.RUNNING
DRAFT = Batch.Status.DRAFT


@dataclass(frozen=True)
class BatchSettings:
    """How a batch's rows are sent, as read at the claim that took them."""

    id: int
    model: str
    system_instruction: str
    temperature: float | None
    max_output_tokens: int | None
    response_schema: dict | None
    max_retries: int
    rpm_limit: int | None
    tpm_limit: int | None
    thinking: str = "off"
    owner_id: int = 0
    use_cache: bool = False
    # Sent in a Gemini Batch Mode job (batches.batchmode): billed at the batch-mode price.
    batch_mode: bool = False
    tools: tuple[str, ...] = ()  # grounding tools (providers.capabilities)


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    batch: BatchSettings
    index: int
    prompt: str
    conversation_key: str
    attempts: int
    token: uuid.UUID
    # Earlier (prompt, answer) turns of the row's conversation, oldest first.
    history: tuple[tuple[str, str], ...] = ()
    # The row's share of the claim's budget reservation (nanos) and the budgets it is held in.
    reserved: int = 0
    budget_keys: tuple[str, ...] = ()
    # BatchDocument ids attached after the prompt (batches.documents.parts).
    documents: tuple[int, ...] = ()
    # Result cache: the row's key (None when the batch opted out), and the answer found for it.
    cache_key: str | None = None
    cached: Response | None = None

    def request(self, documents: tuple = ()) -> Request:
        """What is sent to the model for this row, with its documents' attachments."""
        batch = self.batch
        return Request(
            model=batch.model, prompt=self.prompt, history=self.history,
            system_instruction=batch.system_instruction, temperature=batch.temperature,
            max_output_tokens=batch.max_output_tokens, response_schema=batch.response_schema,
            thinking=batch.thinking, documents=documents, tools=batch.tools,
        )


class Kind(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"  # back to pending after not_before, one attempt spent
    RELEASE = "release"  # back to pending, no attempt spent


@dataclass
class Outcome:
    row: ClaimedRow
    kind: Kind
    error: str = ""
    response: Response | None = None
    latency_ms: int | None = None
    # When the answer came back; an answer from before the batch began to wait for the API
    # does not end the wait.
    answered_at: datetime | None = None
    not_before: datetime | None = None
    data: object = None  # the validated answer of a columns batch (engine.answers)
    extra_attempts: int = 0  # a repair request spent one more attempt
    # Every billed call behind `response` when there were several (a repair); each is priced on
    # its own. Empty: `response` is the only call.
    calls: tuple[Response, ...] = ()

    def cost(self, now: datetime):
        """What the answer's calls cost (Decimal), None: price unknown."""
        assert self.response is not None
        if self.cached:
            return Decimal(0)  # the result cache's answer was not billed again
        return costs.calls_cost(self.row.batch.model, self.calls or (self.response,), now,
                                batch_mode=self.row.batch.batch_mode)
    cached: bool = False  # the answer came from the result cache


@dataclass
class BatchEvents:
    """Batch-level results of a flush: a configuration error fails the batch, a spent daily
    quota pauses it."""

    failures: dict[int, str] = field(default_factory=dict)
    pauses: dict[int, str] = field(default_factory=dict)
    # Batches whose rows wait for the model's API (circuit breaker open), since when.
    api_waiting: dict[int, datetime] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.failures or self.pauses or self.api_waiting)

    def merge(self, other: BatchEvents) -> None:
        for mine, theirs in ((self.failures, other.failures), (self.pauses, other.pauses),
                             (self.api_waiting, other.api_waiting)):
            for key, value in theirs.items():
                mine.setdefault(key, value)


def runnable_batches():
    # A draft runs only its sample rows, and only while a sample was asked for.
    return Batch.objects.filter(Q(status__in=RUNNABLE) | Q(status=DRAFT, sampling=True),
                                paused=False, cancel_requested=False)


def runnable_rows(status: str):
    """Rows with this status in runnable batches (of a draft, only its sample rows)."""
    runnable = runnable_batches()
    return BatchResult.objects.filter(status=status).filter(
        Q(batch__in=runnable.exclude(status=DRAFT))
        | Q(batch__in=runnable.filter(status=DRAFT), sample=True)).exclude(ONLY_IN_JOBS)


# A batch-mode row is sent in a provider job (batches.batchmode), unless it was handed to the
# online engine (its job stalled and the batch allows the fallback).
ONLY_IN_JOBS = Q(batch__mode=Mode.BATCH, online=False)


def claimable(qs, now: datetime):
    return qs.filter(status=PENDING).filter(Q(not_before__isnull=True) | Q(not_before__lte=now))


# Claims ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Room:
    """A runnable batch that may have a row to claim, as read before any lock."""

    id: int
    priority: int
    concurrency: int
    running: int
    simple: bool  # claimed with the other simple batches in one transaction (_claim_simple)


def claim_rows(limit: int, *, lease_s: float, held: Mapping[int, int] | None = None,
               alone_ok: Collection[int] = (), others: dict[int, int] | None = None,
               ) -> list[ClaimedRow]:
    """Claim up to `limit` rows across runnable batches: by priority, sharing within one.

    Within a priority the slice's window is shared: first each batch may fill up to an equal
    share of the window (less what it already holds), then what is left goes to the oldest
    batches first. So a small batch runs at its own concurrency beside big ones, and a batch
    alone still fills the window.

    `held`: rows per batch this slice already has in flight. A slice takes at most its share of a
    batch's concurrency (concurrency / BATCH_SLICES_PER_BATCH), so every worker gets part of a
    batch, unless the batch is in `alone_ok` (no other slice has run its rows for a while).
    `others`, when given, is filled with the rows per batch that other slices are running.

    Simple batches (no rule of their own for their rows: see _batches_with_room) are claimed
    together in one transaction of a fixed number of queries, however many there are; the others
    one by one through claim_batch_rows, first, on a plan made from unlocked counts."""
    have = defaultdict(int, held or {})
    window = limit + sum(have.values())
    batches = _batches_with_room(have, others)
    claimed: list[ClaimedRow] = []
    special = {b.id for b in batches if not b.simple}
    if special:
        rooms = {b.id: _room(b.concurrency, b.running, have[b.id], b.id not in alone_ok)
                 for b in batches}
        for batch_id, n in _share(batches, limit, have, window, rooms).items():
            if batch_id not in special:
                continue
            rows = claim_batch_rows(batch_id, n, lease_s=lease_s, held=have[batch_id],
                                    share_cap=batch_id not in alone_ok, others=others)
            have[batch_id] += len(rows)
            claimed += rows
    if len(special) < len(batches) and len(claimed) < limit:
        claimed += _claim_simple(batches, limit - len(claimed), have=have, window=window,
                                 lease_s=lease_s, alone_ok=alone_ok, others=others)
    return claimed


def _share(batches: list[_Room], limit: int, have: Mapping[int, int], window: int,
           rooms: Mapping[int, int]) -> dict[int, int]:
    """Rows to take per batch, in the order they are taken (see claim_rows): by priority; within
    one, up to an equal share of the window each, then what is left to the oldest. `rooms`: at
    most how many rows each batch can give."""
    plan: dict[int, int] = {}
    left = limit
    by_priority: dict[int, list[int]] = defaultdict(list)
    for batch in batches:  # ordered by priority, then age
        by_priority[batch.priority].append(batch.id)
    for ids in by_priority.values():
        fair_share = math.ceil(window / len(ids))
        exhausted: set[int] = set()  # can give less than asked: capped or out of rows for now
        for share in (fair_share, None):
            for batch_id in ids:
                if left <= 0:
                    return plan
                taken = plan.get(batch_id, 0)
                want = left if share is None else min(left, share - have.get(batch_id, 0) - taken)
                if want <= 0 or batch_id in exhausted:
                    continue
                n = min(want, rooms.get(batch_id, 0) - taken)
                if n < want:
                    exhausted.add(batch_id)
                if n > 0:
                    plan[batch_id] = taken + n
                    left -= n
    return plan


def _room(concurrency: int, running: int, held: int, share_cap: bool) -> int:
    """Rows a slice may add to a batch: up to its concurrency, and (share_cap) to this slice's
    share of it."""
    n = concurrency - running
    if share_cap:
        share = math.ceil(concurrency / max(1, django_settings.BATCH_SLICES_PER_BATCH))
        n = min(n, share - held)
    return n


def _batches_with_room(have: Mapping[int, int], others: dict[int, int] | None) -> list[_Room]:
    """The runnable batches that may have a row to claim, highest priority and oldest first:
    some row pending and fewer rows running than the batch's concurrency, read in a few queries.
    Only a hint (each claim checks again under its lock), but it spares a claim the batches at
    their cap or with nothing pending. A batch left out still has its rows running elsewhere
    reported in `others`.

    A batch is simple when none of claim_batch_rows' special rules applies to it: not a draft
    (sample rows only), not in batch mode (online rows only), no conversation column (turn
    order, histories), no budget to reserve against."""
    batches = sql.runnable_with_counts(timezone.now())
    with_room = []
    for batch in batches:
        batch_id, _, concurrency, *_, pending, running = batch
        if pending and running < concurrency:
            with_room.append(batch)
        elif others is not None:
            others[batch_id] = max(0, running - have.get(batch_id, 0))
    budgeted = costs.budgeted((b[0], b[6], b[7]) for b in with_room)
    return [
        _Room(batch_id, priority, concurrency, running,
              simple=(status != DRAFT and mode == Mode.ONLINE and not conversation
                      and batch_id not in budgeted))
        for batch_id, priority, concurrency, status, mode, conversation, *_, running
        in with_room
    ]


def _claim_simple(batches: list[_Room], limit: int, *, have: Mapping[int, int], window: int,
                  lease_s: float, alone_ok: Collection[int], others: dict[int, int] | None,
                  ) -> list[ClaimedRow]:
    """Claim from the simple batches in one transaction: lock the ones the unlocked counts say
    the claim will draw from (_candidates), count their running rows, pick each one's first
    claimable rows (pick.claimable_ids), share them out as claim_rows does, and claim the chosen
    rows under one token."""
    now = timezone.now()
    candidates = _candidates([b for b in batches if b.simple], limit, have=have, window=window,
                             alone_ok=alone_ok, others=others)
    with transaction.atomic():
        locked = _lock_simple(candidates)
        if not locked:
            return []
        running = sql.running_counts(locked)
        rooms = {}
        for batch_id, concurrency in locked.items():
            in_flight = running.get(batch_id, 0)
            if others is not None:
                others[batch_id] = max(0, in_flight - have[batch_id])
            rooms[batch_id] = min(limit, _room(concurrency, in_flight, have[batch_id],
                                               batch_id not in alone_ok))
        ids = pick.claimable_ids(rooms, now)
        plan = _share(batches, limit, have, window,
                      {batch_id: len(found) for batch_id, found in ids.items()})
        chosen = [row_id for batch_id, n in plan.items() for row_id in ids[batch_id][:n]]
        if not chosen:
            return []
        token = uuid.uuid4()
        rows = sql.take(chosen, token, now, now + timedelta(seconds=lease_s))
        sql.mark_running({row[0] for row in rows}, now)
        # Only the batches rows came from, and only the fields their settings need.
        settings = {batch.pk: _settings_of(batch) for batch in Batch.objects.filter(
            pk__in={row[0] for row in rows}).only(*SETTINGS_FIELDS)}
    order = {batch_id: i for i, batch_id in enumerate(plan)}
    rows.sort(key=lambda row: (order[row[0]], row[2]))
    claimed = [
        ClaimedRow(id=id_, batch=settings[batch_id], index=index, prompt=prompt,
                   conversation_key=key, attempts=attempts, token=token,
                   documents=tuple(docs or ()))
        for batch_id, id_, index, prompt, key, attempts, docs, _ in rows
    ]
    return reuse.with_cached_answers(claimed, bypass={row[1] for row in rows if row[7]})


def _candidates(simple: list[_Room], limit: int, *, have: Mapping[int, int], window: int,
                alone_ok: Collection[int], others: dict[int, int] | None) -> list[int]:
    """The simple batches a claim of `limit` rows would draw from by the unlocked counts, with
    room for twice as many rows in case some have fewer pending rows than room or filled up
    since: 200 small batches at their cap or nearly so must not all be locked, counted and
    searched to claim a dozen rows. The others' rows running elsewhere go in `others` as
    read."""
    rooms = {b.id: _room(b.concurrency, b.running, have.get(b.id, 0), b.id not in alone_ok)
             for b in simple}
    chosen = set(_share(simple, 2 * limit, have, window, rooms))
    if others is not None:
        for b in simple:
            if b.id not in chosen:
                others[b.id] = max(0, b.running - have.get(b.id, 0))
    return sorted(chosen)


def _lock_simple(batch_ids: list[int]) -> dict[int, int]:
    """Lock the batches still runnable and simple (their settings may have changed since they
    were read); each one's concurrency. In id order, as write_outcomes locks them, so two
    transactions cannot deadlock."""
    return sql.lock_simple(batch_ids)


def claim_batch_rows(batch_id: int, limit: int, *, lease_s: float, held: int = 0,
                     share_cap: bool = False, others: dict[int, int] | None = None,
                     ) -> list[ClaimedRow]:
    with transaction.atomic():
        # Locking the batch row serialises claims per batch on PostgreSQL, so the count of
        # running rows below stays true until commit; SQLite's IMMEDIATE transactions are serial.
        batch = runnable_batches().select_for_update().filter(pk=batch_id).first()
        if batch is None:
            return []
        in_flight = BatchResult.objects.filter(batch=batch, status=RUNNING).count()
        running = in_flight
        if others is not None:
            others[batch_id] = max(0, running - held)
        n = min(limit, _room(batch.concurrency, running, held, share_cap))
        if n <= 0:
            return []
        now = timezone.now()
        candidates = claimable(BatchResult.objects.filter(batch=batch), now)
        if batch.status == DRAFT:
            candidates = candidates.filter(sample=True)
        if batch.mode == Mode.BATCH:
            candidates = candidates.filter(online=True)
        if batch.conversation_column:
            candidates = candidates.filter(Q(conversation_key="") | ~Exists(
                _earlier_turns(BatchResult.Status.PENDING, RUNNING)))
        candidates = candidates.order_by("index")
        token = uuid.uuid4()
        expires = now + timedelta(seconds=lease_s)
        claim = dict(status=RUNNING, claim_token=token, started_at=now, lease_expires_at=expires)
        # Unwritten rows still hold their reservations until their write settles them.
        budget = costs.claim_budget(batch, n=n, token=str(token), expires_at=expires.timestamp(),
                                    running=in_flight)
        if budget.pause_message:
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.PAUSED, paused=True,
                                                     last_error=budget.pause_message)
            notifications.record_batch_event(batch.pk, notifications.EventType.PAUSED,
                                             reason=notifications.PauseReason.BUDGET)
            return []
        n = budget.rows
        if n <= 0:
            return []
        if connection.vendor == "postgresql":
            ids = list(candidates.select_for_update(skip_locked=True)
                       .values_list("id", flat=True)[:n])
            count = BatchResult.objects.filter(id__in=ids, status=PENDING).update(**claim)
        else:
            count = BatchResult.objects.filter(
                id__in=candidates.values("id")[:n], status=PENDING
            ).update(**claim)
        costs.trim(budget, str(token), count)
        if not count:
            if batch.conversation_column:
                _fail_orphan_turns(batch, now)
            return []
        Batch.objects.filter(pk=batch.pk).update(slice_heartbeat_at=now)
        if batch.started_at is None or batch.status == Batch.Status.PENDING:
            Batch.objects.filter(pk=batch.pk, status=Batch.Status.PENDING).update(
                status=Batch.Status.RUNNING, started_at=batch.started_at or now)
        rows = list(
            BatchResult.objects.filter(batch=batch, status=RUNNING, claim_token=token)
            .order_by("index")
            .values_list("id", "index", "prompt", "conversation_key", "attempts",
                         "document_ids", "bypass_cache")
        )
    settings = _settings_of(batch)
    histories = _histories(batch, rows) if batch.conversation_column else {}
    claimed = [
        ClaimedRow(id=id_, batch=settings, index=index, prompt=prompt, conversation_key=key,
                   attempts=attempts, token=token, history=histories.get(id_, ()),
                   reserved=budget.per_row, budget_keys=budget.keys,
                   documents=tuple(docs or ()))
        for id_, index, prompt, key, attempts, docs, _ in rows
    ]
    return reuse.with_cached_answers(claimed, bypass={row[0] for row in rows if row[6]})


def _earlier_turns(*statuses: str):
    return BatchResult.objects.filter(
        batch_id=OuterRef("batch_id"),
        conversation_key=OuterRef("conversation_key"),
        index__lt=OuterRef("index"),
        status__in=statuses,
    ).exclude(conversation_key="")


def _fail_orphan_turns(batch: Batch, now: datetime) -> int:
    """Pending turns behind a failed or cancelled turn (e.g. after retrying one later row) can
    never run with their context; fail them so the batch can finish."""
    orphans = BatchResult.objects.filter(batch=batch, status=PENDING).exclude(
        conversation_key=""
    ).filter(Exists(_earlier_turns(BatchResult.Status.FAILED, BatchResult.Status.CANCELLED)))
    return BatchResult.objects.filter(id__in=list(orphans.values_list("id", flat=True))).update(
        status=BatchResult.Status.FAILED, error=EARLIER_TURN_FAILED, finished_at=now,
        not_before=None)


def _histories(batch: Batch, rows: list[tuple]) -> dict[int, tuple[tuple[str, str], ...]]:
    keyed = [(row[0], row[1], row[3]) for row in rows if row[3]]
    if not keyed:
        return {}
    turns: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    earlier = (
        BatchResult.objects.filter(batch=batch, status=BatchResult.Status.SUCCEEDED,
                                   conversation_key__in={key for _, _, key in keyed})
        .order_by("conversation_key", "index")
        .values_list("conversation_key", "index", "prompt", "output")
    )
    for key, index, prompt, output in earlier:
        turns[key].append((index, prompt, output))
    return {
        id_: tuple((p, o) for i, p, o in turns[key] if i < index) for id_, index, key in keyed
    }


# The fields _settings_of reads: a claim loads only these (a Batch has dozens).
SETTINGS_FIELDS = ("model_name", "system_instruction", "language", "temperature",
                   "max_output_tokens", "response_schema", "max_retries", "rpm_limit",
                   "tpm_limit", "thinking", "owner_id", "use_cache", "google_search",
                   "url_context")


def _settings_of(batch: Batch, *, batch_mode: bool = False) -> BatchSettings:
    return BatchSettings(
        id=batch.pk, model=batch.model_name,
        # The "Answer in" language is one more line of the instruction the model is sent.
        system_instruction=languages.with_language(batch.system_instruction, batch.language),
        temperature=batch.temperature, max_output_tokens=batch.max_output_tokens,
        response_schema=batch.response_schema, max_retries=batch.max_retries,
        rpm_limit=batch.rpm_limit, tpm_limit=batch.tpm_limit, thinking=batch.thinking,
        owner_id=batch.owner_id, use_cache=batch.use_cache, batch_mode=batch_mode,
        tools=batch.tools,
    )


# Writes ---------------------------------------------------------------------------------------

def write_outcomes(outcomes: list[Outcome], events: BatchEvents | None = None, *,
                   busy: Collection[int] = ()) -> set[int]:
    """Write finished rows in one transaction, then finalise the batches they belong to, except
    those in `busy`: the caller still has rows of them running, so they cannot be done (this
    spares the hot path the finalising queries on every write).

    Returns the ids of the batches touched."""
    events = events or BatchEvents()
    batch_ids = sorted({o.row.batch.id for o in outcomes} | set(events.failures)
                       | set(events.pauses) | set(events.api_waiting))
    if not batch_ids:
        return set()
    now = timezone.now()
    with transaction.atomic():
        # Locked in id order (claims lock one batch at a time), so two flushes cannot deadlock,
        # and a cancel either commits before this reads its flag or waits for this commit.
        cancelled = sql.lock_for_write(batch_ids)
        successes = [o for o in outcomes if o.kind is Kind.SUCCEEDED]
        tokens, spend = _write_successes(successes, now)
        settled = [(o.row.budget_keys, str(o.row.token), o.row.reserved,
                    spend.row_costs.get(o.row.id, 0))
                   for o in successes if o.row.id in spend.row_costs]
        for outcome in outcomes:
            if outcome.kind is Kind.SUCCEEDED:
                continue
            batch_id = outcome.row.batch.id
            # A columns answer that failed validation was still answered, and billed.
            billed = outcome.kind is Kind.FAILED and outcome.response is not None
            cost = outcome.cost(now) if billed else None
            if not _write_one(outcome, now, cancelled=cancelled.get(batch_id, True), cost=cost):
                continue  # the lease was lost: a newer claim owns the row now
            if billed:
                _add_failed_answer(tokens, spend, outcome, cost)
            settled.append((outcome.row.budget_keys, str(outcome.row.token),
                            outcome.row.reserved, spend.row_costs.get(outcome.row.id, 0)))
            if outcome.kind is Kind.FAILED and outcome.row.conversation_key:
                BatchResult.objects.filter(
                    batch_id=batch_id, conversation_key=outcome.row.conversation_key,
                    index__gt=outcome.row.index, status=PENDING,
                ).update(status=BatchResult.Status.FAILED, error=EARLIER_TURN_FAILED,
                         finished_at=now, not_before=None)
        answered: dict[int, datetime] = {}
        for o in outcomes:
            if o.response is not None:  # the API answered, even if the answer failed
                when = o.answered_at or now
                answered[o.row.batch.id] = max(when, answered.get(o.row.batch.id, when))
        _add_to_batch_totals(tokens, spend, answered)
        costs.add_monthly_spend(spend.per_owner, now)
        _apply_events(events, now)
        settle_now = costs.get_store().in_database
        if settle_now:
            # Committed with the write: a worker killed right after the commit would otherwise
            # leave this spend out of the ledger for good (claims still hold to the budget
            # through the batch's totals, but the ledger would not add up). Locked after the
            # batches, as claims lock their batch, then the ledger.
            costs.settle(settled)
    if not settle_now:
        # Redis: after the commit, so that a claim that sees the reservation gone sees the
        # spend too.
        costs.settle(settled)
    finalise(set(batch_ids).difference(busy))
    return set(batch_ids)


def _add_to_batch_totals(tokens: dict[int, tuple[int, int, int, int, int]],
                         spend: costs.Spend, answered: Mapping[int, datetime]) -> None:
    """Add a write's tokens, cost and cache savings to each batch's running totals, and clear
    its wait for the API if an answer came after the wait began (the API is back; `answered`:
    each batch's newest answer): one statement for all of them (sql.add_to_batches)."""
    batch_ids = sorted(set(tokens) | set(spend.per_batch))
    if not batch_ids:
        return
    rows, columns = [], None
    waiting_field = Batch._meta.get_field("api_waiting_since")
    for batch_id in batch_ids:
        prompt_tokens, output_tokens, *saved = tokens.get(batch_id, (0, 0, 0, 0, 0))
        add = {"prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
               **spend.batch_totals(batch_id), **reuse.savings(*saved)}
        columns = columns or [Batch._meta.get_field(name) for name in add]
        # None (no answer in this write): `waiting <= NULL` is not true, so the wait stands.
        newest = waiting_field.get_db_prep_value(answered.get(batch_id), connection)
        rows.append((batch_id, newest,
                     *(f.get_db_prep_save(add[f.name], connection) for f in columns)))
    sql.add_to_batches([f.name for f in columns], rows)


def _sources(response: Response) -> list[dict] | None:
    return [s.as_dict() for s in response.sources] or None


def _write_successes(outcomes: list[Outcome], now: datetime
                     ) -> tuple[dict[int, tuple[int, int, int, int, int]], costs.Spend]:
    """Write successes in one statement (the hot path), each only if this slice still holds its
    claim. Returns per batch, of the rows actually written: (prompt, output) tokens paid for,
    then the rows from the cache and the (prompt, output) tokens they saved; and their cost."""
    spend = costs.Spend()
    if not outcomes:
        return {}, spend
    field = BatchResult._meta.get_field

    def prep(name: str, value):
        return field(name).get_db_prep_save(value, connection)  # None is SQL NULL

    sql = (
        f"UPDATE {BatchResult._meta.db_table} SET status = %s, output = %s, error = '', "
        "finish_reason = %s, model_version = %s, prompt_tokens = %s, output_tokens = %s, "
        "latency_ms = %s, finished_at = %s, not_before = NULL, attempts = attempts + %s, "
        "data = %s, cached = %s, claim_token = NULL, lease_expires_at = NULL, "
        "thoughts_tokens = %s, cached_tokens = %s, cost = %s, sources = %s "
        "WHERE id = %s AND claim_token = %s AND status = %s"
    )
    finished_at = prep("finished_at", now)
    params = []
    row_costs = {}
    owners = {o.row.id: o.row.batch.owner_id for o in outcomes}
    for o in outcomes:
        response = o.response
        assert response is not None
        row_costs[o.row.id] = cost = o.cost(now)
        params.append((
            BatchResult.Status.SUCCEEDED, response.text, response.finish_reason[:40],
            response.model_version[:100], response.prompt_tokens, response.output_tokens,
            o.latency_ms, finished_at, 0 if o.cached else 1 + o.extra_attempts,
            prep("data", o.data), o.cached, response.thoughts_tokens, response.cached_tokens,
            prep("cost", cost), prep("sources", _sources(response)), o.row.id,
            prep("claim_token", o.row.token), RUNNING,
        ))
    # Rows whose lease was lost are not written; count tokens only for the ones that were, and
    # only for answers paid for (a cached answer costs nothing).
    if connection.vendor == "postgresql":
        written = _update_successes_postgresql(params)
    else:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
        written = set(
            BatchResult.objects.filter(id__in=[o.row.id for o in outcomes], finished_at=now,
                                       status=BatchResult.Status.SUCCEEDED)
            .values_list("id", flat=True)
        )
    done = [o for o in outcomes if o.row.id in written]
    reuse.remember(done)
    for o in done:
        if o.cached:
            spend.row_costs[o.row.id] = 0  # settles its reservation, adds nothing
            continue
        r = o.response
        spend.add(o.row.id, o.row.batch.id, owners[o.row.id], row_costs[o.row.id],
                  r.thoughts_tokens or 0, r.cached_tokens or 0)
    return reuse.tally(done), spend


# The same UPDATE as _write_successes' for all the rows at once, from a VALUES list: one round
# trip and one firing of the status counters' trigger (batches/status_counts.py) per write
# instead of one per row, and the written rows' ids come back with it. The VALUES columns are
# cast because psycopg2 sends text for strings and NULLs.
_SUCCESSES_POSTGRESQL = """
UPDATE {table} AS r SET status = v.status, output = v.output, error = '',
    finish_reason = v.finish_reason, model_version = v.model_version,
    prompt_tokens = v.prompt_tokens::integer, output_tokens = v.output_tokens::integer,
    latency_ms = v.latency_ms::integer, finished_at = v.finished_at::timestamptz,
    not_before = NULL, attempts = r.attempts + v.attempts::integer, data = v.data::jsonb,
    cached = v.cached::boolean, claim_token = NULL, lease_expires_at = NULL,
    thoughts_tokens = v.thoughts_tokens::integer, cached_tokens = v.cached_tokens::integer,
    cost = v.cost::numeric, sources = v.sources::jsonb
FROM (VALUES %s) AS v (status, output, finish_reason, model_version, prompt_tokens,
    output_tokens, latency_ms, finished_at, attempts, data, cached, thoughts_tokens,
    cached_tokens, cost, sources, id, token, running)
WHERE r.id = v.id AND r.claim_token = v.token::uuid AND r.status = v.running
RETURNING r.id
"""


def _update_successes_postgresql(params: list[tuple]) -> set[int]:
    from psycopg2.extras import execute_values

    sql = _SUCCESSES_POSTGRESQL.format(table=connection.ops.quote_name(
        BatchResult._meta.db_table))
    with connection.cursor() as cursor, connection.wrap_database_errors:
        # The driver's own cursor: Django's wrapper has no mogrify, which execute_values uses.
        rows = execute_values(cursor.cursor, sql, params, page_size=len(params), fetch=True)
    return {row_id for (row_id,) in rows}


def _add_failed_answer(tokens: dict[int, tuple[int, int, int, int, int]], spend: costs.Spend,
                       outcome: Outcome, cost) -> None:
    """Count a failed but billed answer's tokens and cost, as a success's are."""
    response, row = outcome.response, outcome.row
    assert response is not None
    p, o, *saved = tokens.get(row.batch.id, (0, 0, 0, 0, 0))
    tokens[row.batch.id] = (p + (response.prompt_tokens or 0), o + (response.output_tokens or 0),
                            *saved)
    spend.add(row.id, row.batch.id, row.batch.owner_id, cost, response.thoughts_tokens or 0,
              response.cached_tokens or 0)


def _write_one(outcome: Outcome, now: datetime, *, cancelled: bool, cost=None) -> bool:
    """Write a failure or a return to pending (successes go through _write_successes)."""
    row = outcome.row
    mine = BatchResult.objects.filter(pk=row.id, claim_token=row.token, status=RUNNING)
    released = dict(claim_token=None, lease_expires_at=None)
    kind = outcome.kind
    if kind is Kind.FAILED:
        # A columns answer that failed validation keeps its raw text, its usage and its cost.
        answer = {}
        if response := outcome.response:
            answer = dict(output=response.text, prompt_tokens=response.prompt_tokens,
                          output_tokens=response.output_tokens,
                          thoughts_tokens=response.thoughts_tokens,
                          cached_tokens=response.cached_tokens, cost=cost,
                          finish_reason=response.finish_reason[:40],
                          model_version=response.model_version[:100])
        return bool(mine.update(
            status=BatchResult.Status.FAILED, error=outcome.error, latency_ms=outcome.latency_ms,
            finished_at=now, not_before=None, attempts=F("attempts") + 1 + outcome.extra_attempts,
            **answer, **released,
        ))
    spent = {"attempts": F("attempts") + 1} if kind is Kind.RETRY else {}
    error = {"error": outcome.error} if outcome.error else {}
    if cancelled:
        # The batch was cancelled while this row ran: it will not be claimed again.
        return bool(mine.update(
            status=BatchResult.Status.CANCELLED, finished_at=now, not_before=None,
            **(error or {"error": "Cancelled before it ran."}), **spent, **released,
        ))
    return bool(mine.update(status=PENDING, not_before=outcome.not_before, **error, **spent,
                            **released))


def _apply_events(events: BatchEvents, now: datetime) -> None:
    for batch_id, message in events.failures.items():
        if Batch.objects.filter(pk=batch_id, status__in=Batch.ACTIVE_STATUSES).update(
                status=Batch.Status.FAILED, last_error=message, finished_at=now,
                api_waiting_since=None):
            notifications.record_batch_event(batch_id, notifications.EventType.FAILED)
    for batch_id, since in events.api_waiting.items():
        Batch.objects.filter(pk=batch_id, api_waiting_since__isnull=True).update(
            api_waiting_since=since)
    for batch_id, message in events.pauses.items():
        if Batch.objects.filter(pk=batch_id, status__in=RUNNABLE, cancel_requested=False).update(
                status=Batch.Status.PAUSED, paused=True, last_error=message):
            notifications.record_batch_event(batch_id, notifications.EventType.PAUSED,
                                             reason=notifications.pause_reason(message))


def finalise(batch_ids) -> None:
    """Finish the batches of `batch_ids` that have no open row left. Which ones have is one
    query, not one per batch: a write of many small batches' rows names dozens."""
    if not batch_ids:
        return
    done = sql.without_open_rows(sorted(batch_ids), Batch.FINAL_STATUSES)
    for batch in Batch.objects.filter(pk__in=done):
        batch.finalise_if_done()


def release_rows(rows: list[ClaimedRow]) -> int:
    """Give rows back to pending without spending an attempt (the slice is stopping)."""
    if not rows:
        return 0
    outcomes = [Outcome(row, Kind.RELEASE) for row in rows]
    before = len(outcomes)
    write_outcomes(outcomes)
    return before


# Leases and heartbeats ------------------------------------------------------------------------

def renew_leases(tokens: set[uuid.UUID], batch_ids: set[int], *, lease_s: float,
                 budget_keys: Collection[str] = ()) -> int:
    """Extend the leases this slice holds (and their budget reservations) and mark its batches
    as having a live slice."""
    now = timezone.now()
    if batch_ids:
        with transaction.atomic():
            # Locked in id order first, as claims and writes lock several batches: a bare
            # UPDATE locks them in whatever order it scans them, and could deadlock with them.
            locked = list(Batch.objects.select_for_update().filter(pk__in=batch_ids)
                          .order_by("pk").values_list("pk", flat=True))
            Batch.objects.filter(pk__in=locked).update(slice_heartbeat_at=now)
    if not tokens:
        return 0
    costs.renew(budget_keys, tokens, (now + timedelta(seconds=lease_s)).timestamp())
    return BatchResult.objects.filter(
        batch_id__in=batch_ids, status=RUNNING, claim_token__in=tokens
    ).update(lease_expires_at=now + timedelta(seconds=lease_s))


def idle_wait() -> float | None:
    """How long an idle slice should wait before claiming again, or None if it should stop.

    It stops when no runnable batch has a pending row, or when other slices hold running rows
    (their batch caps or conversations keep this one idle, and they go on claiming). Otherwise
    the pending rows are all in backoff (or behind a conversation turn in backoff): wait for
    the soonest."""
    now = timezone.now()
    pending = runnable_rows(PENDING)
    if not pending.exists():
        return None
    if runnable_rows(RUNNING).exists():
        return None
    soonest = pending.filter(not_before__gt=now).aggregate(t=Min("not_before"))["t"]
    if soonest is None:
        return 0.2  # claimable already: another slice took the rows first, or just released
    return (soonest - now).total_seconds()


def has_work() -> bool:
    return runnable_rows(PENDING).exists()


def close_connection() -> None:
    connection.close()
