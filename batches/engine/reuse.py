"""The engine's side of the result cache: claimed rows get their key and any cached answer;
written answers fill the cache; batches count what the cache saved them.

Called from batches.engine.db on its database thread; it works on db's ClaimedRow and Outcome
objects without importing db (db imports this module).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from batches import resultcache
from batches.models import BatchDocument


def with_cached_answers(rows: list[Any], bypass: set[int]) -> list[Any]:
    """Give each claimed row of a batch that uses the cache its key, and the answer its owner's
    cache has for it (rows in `bypass` are re-runs: they get a key, so their new answer replaces
    the cached one). The rows may come from many batches and owners: one lookup for all."""
    if not resultcache.enabled() or not any(row.batch.use_cache for row in rows):
        return rows
    digests = _document_digests({d for row in rows if row.batch.use_cache for d in row.documents})
    keyed = [replace(row, cache_key=_key(row.batch.owner_id, row, digests))
             if row.batch.use_cache else row for row in rows]
    looked_up = [r for r in keyed if r.cache_key and r.id not in bypass]
    hits = resultcache.lookup_many((r.batch.owner_id, r.cache_key) for r in looked_up)
    return [replace(r, cached=hits.get((r.batch.owner_id, r.cache_key)))
            if r.cache_key and r.id not in bypass else r for r in keyed]


def _document_digests(ids: set[int]) -> dict[int, list[str]]:
    """Each attached document as the key sees it: its content's sha256 and MIME type (not its
    Files API URI, which changes with every upload, nor its bytes, not read at claim time)."""
    if not ids:
        return {}
    return {pk: [sha, mime] for pk, sha, mime in BatchDocument.objects.filter(pk__in=ids)
            .values_list("pk", "sha256", "mime_type")}


def _key(owner_id: int, row: Any, digests: dict[int, list[str]]) -> str | None:
    """The row's cache key; None (no reuse, no fill) if one of its documents is gone."""
    if not row.documents:
        return resultcache.cache_key(owner_id, row.request())
    if any(d not in digests for d in row.documents):
        return None
    return resultcache.cache_key(owner_id, row.request(),
                                 documents=[digests[d] for d in row.documents])


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


def savings(rows: int, prompt_tokens: int, output_tokens: int) -> dict:
    """Batch fields to add a write's cache savings to."""
    return {"cached_count": rows, "saved_prompt_tokens": prompt_tokens,
            "saved_output_tokens": output_tokens}


def remember(outcomes: Iterable[Any]) -> int:
    """Store the model's answers (not the cache's own) for the rows that have a key."""
    return resultcache.store(
        resultcache.Entry(o.row.batch.owner_id, o.row.cache_key, o.row.batch.model, o.response)
        for o in outcomes if o.row.cache_key and not o.cached
    )
