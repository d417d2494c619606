"""The engine's side of the result cache: claimed rows get their key and any cached answer;
written answers fill the cache; batches count what the cache saved them.

Called from batches.engine.db on its database thread; it works on db's ClaimedRow and Outcome
objects without importing db (db imports this module).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.db.models import F

from batches import resultcache


def with_cached_answers(rows: list[Any], bypass: set[int]) -> list[Any]:
    """Give each claimed row its cache key, and the answer the owner's cache has for it (rows
    in `bypass` are re-runs: they get a key, so their new answer replaces the cached one)."""
    if not rows or not rows[0].batch.use_cache or not resultcache.enabled():
        return rows
    owner_id = rows[0].batch.owner_id
    keyed = [replace(row, cache_key=resultcache.cache_key(owner_id, row.request()))
             for row in rows]
    hits = resultcache.lookup(owner_id, [r.cache_key for r in keyed if r.id not in bypass])
    return [replace(r, cached=hits.get(r.cache_key)) if r.id not in bypass else r
            for r in keyed]


def tally(outcomes: Iterable[Any]) -> dict[int, tuple[int, int, int, int, int]]:
    """Per batch: (prompt, output) tokens paid for, then rows from the cache and the (prompt,
    output) tokens they saved."""
    sums: dict[int, tuple[int, int, int, int, int]] = {}
    for o in outcomes:
        p, out = o.response.prompt_tokens or 0, o.response.output_tokens or 0
        add = (0, 0, 1, p, out) if o.cached else (p, out, 0, 0, 0)
        before = sums.get(o.row.batch.id, (0, 0, 0, 0, 0))
        sums[o.row.batch.id] = tuple(a + b for a, b in zip(before, add, strict=True))
    return sums


def savings_update(rows: int, prompt_tokens: int, output_tokens: int) -> dict:
    """Batch fields to add a write's cache savings to (empty when nothing came from it)."""
    if not rows:
        return {}
    return {"cached_count": F("cached_count") + rows,
            "saved_prompt_tokens": F("saved_prompt_tokens") + prompt_tokens,
            "saved_output_tokens": F("saved_output_tokens") + output_tokens}


def remember(outcomes: Iterable[Any]) -> int:
    """Store the model's answers (not the cache's own) for the rows that have a key."""
    return resultcache.store(
        resultcache.Entry(o.row.batch.owner_id, o.row.cache_key, o.row.batch.model, o.response)
        for o in outcomes if o.row.cache_key and not o.cached
    )
