"""The first claimable rows of many batches in one statement: the fused claim's pick.

A row is claimable when it is pending and its `not_before` has passed; each batch's rows come
in index order, at most the number asked for that batch. Batch-level rules (runnable, drafts,
batch mode, conversations) are the caller's: it passes only batches where every pending row may
run. Called inside the claim's transaction, with the batches' rows locked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

from django.db import connection

from batches.engine import sql
from batches.models import BatchResult

PENDING = BatchResult.Status.PENDING
# SQLite allows 500 terms in one compound SELECT.
SQLITE_BATCHES_PER_STATEMENT = 200


def claimable_ids(wanted: Mapping[int, int], now: datetime) -> dict[int, list[int]]:
    """Per batch id, the ids of up to `wanted[batch_id]` claimable rows, in index order. On
    PostgreSQL they are locked for this transaction (rows another transaction holds are
    skipped)."""
    wanted = {batch_id: n for batch_id, n in wanted.items() if n > 0}
    if not wanted:
        return {}
    if connection.vendor == "postgresql":
        found = _postgresql(wanted, now)
    else:
        found = []
        batch_ids = sorted(wanted)
        for start in range(0, len(batch_ids), SQLITE_BATCHES_PER_STATEMENT):
            chunk = batch_ids[start:start + SQLITE_BATCHES_PER_STATEMENT]
            found += _sqlite({b: wanted[b] for b in chunk}, now)
    ids: dict[int, list[int]] = defaultdict(list)
    for batch_id, row_id, _ in sorted(found):
        ids[batch_id].append(row_id)
    return dict(ids)


def _names() -> tuple[str, str]:
    """The results table and its `index` column, quoted."""
    return sql.names()["result"], sql.names()["index"]


def _prep_now(now: datetime):
    return sql.prep(BatchResult, "not_before", now)


def _postgresql(wanted: dict[int, int], now: datetime) -> list[tuple[int, int, int]]:
    # One index range scan per batch (batch, status, index), each stopping at its own limit.
    table, index = _names()
    sql = (
        f"SELECT picked.batch_id, picked.id, picked.{index} "
        "FROM unnest(%s::bigint[], %s::integer[]) AS wanted(batch_id, n) "
        "CROSS JOIN LATERAL ("
        f" SELECT r.id, r.batch_id, r.{index} FROM {table} r"
        " WHERE r.batch_id = wanted.batch_id AND r.status = %s"
        " AND (r.not_before IS NULL OR r.not_before <= %s)"
        f" ORDER BY r.{index} LIMIT wanted.n FOR UPDATE SKIP LOCKED"
        ") AS picked"
    )
    batch_ids = sorted(wanted)
    params = [batch_ids, [wanted[b] for b in batch_ids], PENDING, _prep_now(now)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _sqlite(wanted: dict[int, int], now: datetime) -> list[tuple[int, int, int]]:
    # SQLite has no LATERAL and no per-row LIMIT in a correlated subquery: one term per batch,
    # each an index range scan that stops at its own LIMIT. Its IMMEDIATE transactions are
    # serial, so nothing else claims these rows before this transaction's update.
    table, index = _names()
    term = (
        f"SELECT * FROM (SELECT batch_id, id, {index} FROM {table}"
        " WHERE batch_id = %s AND status = %s AND (not_before IS NULL OR not_before <= %s)"
        f" ORDER BY {index} LIMIT %s)"
    )
    sql = " UNION ALL ".join([term] * len(wanted))
    when = _prep_now(now)
    params = [p for batch_id, n in wanted.items() for p in (batch_id, PENDING, when, n)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
