"""The claim's and the write's small, frequent statements, as SQL written once.

A slice claims and writes dozens of times a second. Building each of these statements through
the ORM cost 0.6-1.8 ms of the worker's CPU (clone, filter, compile), several times what the
database took to run them; a claim made eight of them. Here each is a fixed string: only its
quoted table names (worked out once) and the length of its `IN (...)` list are filled in per
call. The ORM stays for everything that is not on that path. Called on the slice's database
thread, inside the caller's transaction where it has one.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from django.db import connection

from batches.models import Batch, BatchResult, Mode

RESULT_PENDING = BatchResult.Status.PENDING
RESULT_RUNNING = BatchResult.Status.RUNNING
ACTIVE = (Batch.Status.PENDING, Batch.Status.RUNNING)


def names() -> dict[str, str]:
    """The quoted table names ("batch", "result"), the quoted "index" column and the row lock
    clause ("for_update", empty where the database has none)."""
    return _names(connection.vendor)


@functools.cache
def _names(vendor: str) -> dict[str, str]:
    quote = connection.ops.quote_name
    return {"batch": quote(Batch._meta.db_table), "result": quote(BatchResult._meta.db_table),
            "index": quote("index"),
            "for_update": " FOR UPDATE" if connection.features.has_select_for_update else ""}


def _sql(template: str) -> str:
    return template.format(**names())


def _in(ids: Collection[int]) -> str:
    return ", ".join(["%s"] * len(ids))


def _fetch(sql: str, params: Iterable[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def prep(model, name: str, value):
    return model._meta.get_field(name).get_db_prep_value(value, connection)


def runnable_with_counts(now: datetime) -> list[tuple]:
    """Every runnable batch (a draft only while it samples; not paused, not being cancelled),
    highest priority and oldest first: (id, priority, concurrency, status, mode,
    conversation_column, budget, owner_id, has a claimable row, rows running). Whether a batch
    has a claimable row is looked up only when it has room (fewer rows running than its
    concurrency; False at its cap): many small batches sit at their cap, and the lookup reads
    rows where the count reads only the index."""
    # MATERIALIZED: counted once per batch, not flattened into both uses of `running`.
    sql = _sql(
        "WITH counted AS MATERIALIZED (SELECT b.id, b.priority, b.concurrency, b.status,"
        "  b.mode, b.conversation_column, b.budget, b.owner_id, b.created_at,"
        "  (SELECT COUNT(*) FROM {result} r"
        "  WHERE r.batch_id = b.id AND r.status = %s) AS running FROM {batch} b"
        "  WHERE (b.status IN (%s, %s) OR (b.status = %s AND b.sampling = %s))"
        "  AND b.paused = %s AND b.cancel_requested = %s)"
        " SELECT b.id, b.priority, b.concurrency, b.status, b.mode, b.conversation_column,"
        " b.budget, b.owner_id,"
        " CASE WHEN b.running < b.concurrency THEN EXISTS (SELECT 1 FROM {result} r"
        "  WHERE r.batch_id = b.id AND r.status = %s"
        "  AND (r.not_before IS NULL OR r.not_before <= %s)) ELSE %s END,"
        " b.running FROM counted b ORDER BY b.priority, b.created_at, b.id")
    return [row[:8] + (bool(row[8]), row[9]) for row in _fetch(sql, [
        RESULT_RUNNING, *ACTIVE, Batch.Status.DRAFT, True, False, False,
        RESULT_PENDING, prep(BatchResult, "not_before", now), False])]


def running_counts(batch_ids: Collection[int]) -> dict[int, int]:
    if not batch_ids:
        return {}
    sql = _sql("SELECT batch_id, COUNT(*) FROM {result} WHERE status = %s"
               f" AND batch_id IN ({_in(batch_ids)}) GROUP BY batch_id")
    return dict(_fetch(sql, [RESULT_RUNNING, *batch_ids]))


def lock_simple(batch_ids: Collection[int]) -> dict[int, int]:
    """Lock, in id order, those of the batches still runnable and simple (online, no
    conversation column, no budget, not a draft); each one's concurrency."""
    if not batch_ids:
        return {}
    sql = _sql(f"SELECT id, concurrency FROM {{batch}} WHERE id IN ({_in(batch_ids)})"
               " AND status IN (%s, %s) AND paused = %s AND cancel_requested = %s"
               " AND mode = %s AND conversation_column = '' AND budget IS NULL"
               " ORDER BY id{for_update}")
    return dict(_fetch(sql, [*batch_ids, *ACTIVE, False, False, Mode.ONLINE]))


def take(row_ids: Collection[int], token, now: datetime, lease_until: datetime) -> list[tuple]:
    """Mark the rows still pending as running under `token`; of those taken: (batch_id, id,
    index, prompt, conversation_key, attempts, document_ids, bypass_cache)."""
    if not row_ids:
        return []
    sql = _sql("UPDATE {result} SET status = %s, claim_token = %s, started_at = %s,"
               f" lease_expires_at = %s WHERE id IN ({_in(row_ids)}) AND status = %s"
               " RETURNING batch_id, id, {index}, prompt, conversation_key, attempts,"
               " document_ids, bypass_cache")
    rows = _fetch(sql, [RESULT_RUNNING, prep(BatchResult, "claim_token", token),
                        prep(BatchResult, "started_at", now),
                        prep(BatchResult, "lease_expires_at", lease_until),
                        *row_ids, RESULT_PENDING])
    documents = BatchResult._meta.get_field("document_ids")
    return [(batch_id, id_, index, prompt, key, attempts,
             documents.from_db_value(docs, None, connection), bool(bypass))
            for batch_id, id_, index, prompt, key, attempts, docs, bypass in rows]


def mark_running(batch_ids: Collection[int], now: datetime) -> None:
    """The batches have a live slice; a pending one is running from now on (started now,
    unless it started before)."""
    if not batch_ids:
        return
    sql = _sql("UPDATE {batch} SET slice_heartbeat_at = %s,"
               " started_at = CASE WHEN status = %s THEN COALESCE(started_at, %s)"
               "  ELSE started_at END,"
               " status = CASE WHEN status = %s THEN %s ELSE status END"
               f" WHERE id IN ({_in(batch_ids)})")
    when = prep(Batch, "slice_heartbeat_at", now)
    with connection.cursor() as cursor:
        cursor.execute(sql, [when, Batch.Status.PENDING, when, Batch.Status.PENDING,
                             Batch.Status.RUNNING, *batch_ids])


def lock_for_write(batch_ids: Collection[int]) -> dict[int, bool]:
    """Lock the batches in id order; whether each one is being cancelled."""
    if not batch_ids:
        return {}
    sql = _sql(f"SELECT id, cancel_requested FROM {{batch}} WHERE id IN ({_in(batch_ids)})"
               " ORDER BY id{for_update}")
    return {batch_id: bool(cancel) for batch_id, cancel in _fetch(sql, batch_ids)}


def without_open_rows(batch_ids: Collection[int], final: Collection[str]) -> list[int]:
    """Of the batches, those not in a `final` status with no row pending or running."""
    if not batch_ids:
        return []
    sql = _sql(f"SELECT b.id FROM {{batch}} b WHERE b.id IN ({_in(batch_ids)})"
               f" AND b.status NOT IN ({_in(final)}) AND NOT EXISTS (SELECT 1 FROM {{result}} r"
               " WHERE r.batch_id = b.id AND r.status IN (%s, %s))")
    return [row[0] for row in _fetch(sql, [*batch_ids, *final, RESULT_PENDING, RESULT_RUNNING])]


def add_to_batches(fields: Collection[str], rows: Collection[tuple]) -> None:
    """Add a write's amounts to its batches' running totals, and end each one's wait for the API
    if an answer came after the wait began, in one statement however many batches the write
    touched (a write of many small batches' rows touches about one batch per row; with a
    statement per batch, py-spy had 7 % of the workers' samples there in scenario 9).

    `fields`: the Batch fields to add to; `rows`: (batch id, newest answer prepared for the
    database or None, then one amount per field, prepared)."""
    if not rows:
        return
    postgresql = connection.vendor == "postgresql"
    quote = connection.ops.quote_name
    # psycopg2 sends a column of NULLs as text: cast each to the column's type there.
    columns = [Batch._meta.get_field(name) for name in fields]
    casts = [f"::{f.cast_db_type(connection)}" if postgresql else "" for f in columns]
    waiting = quote("api_waiting_since")
    answered = "v.answered::timestamptz" if postgresql else "v.answered"
    additions = ", ".join(f"{quote(f.column)} = {quote(f.column)} + v.c{i}{casts[i]}"
                          for i, f in enumerate(columns))
    values = ", ".join([f"({', '.join(['%s'] * (len(columns) + 2))})"] * len(rows))
    sql = _sql(
        f"WITH v (id, answered, {', '.join(f'c{i}' for i in range(len(columns)))})"
        f" AS (VALUES {values})"
        f" UPDATE {{batch}} SET {additions}, {waiting} = CASE WHEN {waiting} <= {answered}"
        f" THEN NULL ELSE {waiting} END FROM v WHERE {{batch}}.id = v.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])
