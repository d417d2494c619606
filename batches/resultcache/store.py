"""Reading, writing and expiring cached answers (models.CachedAnswer)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from batches.models import CachedAnswer
from batches.providers import Response, Source

LOOKUP_CHUNK = 500  # keys per IN (...) query


@dataclass(frozen=True)
class Entry:
    owner_id: int
    key: str
    model: str
    response: Response


def enabled() -> bool:
    return bool(settings.RESULT_CACHE_DAYS)


def fresh_after(now: datetime | None = None) -> datetime:
    """Entries created before this have expired."""
    return (now or timezone.now()) - timedelta(days=settings.RESULT_CACHE_DAYS or 0)


def lookup(owner_id: int, keys: Iterable[str]) -> dict[str, Response]:
    """The owner's unexpired answers for these keys."""
    found = lookup_many((owner_id, key) for key in keys)
    return {key: response for (_, key), response in found.items()}


def lookup_many(wanted: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Response]:
    """Unexpired answers for (owner id, key) pairs of any number of owners, in one query per
    LOOKUP_CHUNK keys."""
    wanted = set(wanted)
    if not wanted or not enabled():
        return {}
    since = fresh_after()
    owners = sorted({owner_id for owner_id, _ in wanted})
    keys = sorted({key for _, key in wanted})
    found: dict[tuple[int, str], Response] = {}
    for start in range(0, len(keys), LOOKUP_CHUNK):
        rows = CachedAnswer.objects.filter(
            owner_id__in=owners, key__in=keys[start:start + LOOKUP_CHUNK], created_at__gte=since,
        ).values_list("owner_id", "key", "output", "finish_reason", "prompt_tokens",
                      "output_tokens", "model_version", "sources")
        for owner_id, key, output, finish, p_tokens, o_tokens, version, sources in rows:
            if (owner_id, key) in wanted:
                found[owner_id, key] = Response(
                    text=output, finish_reason=finish, prompt_tokens=p_tokens,
                    output_tokens=o_tokens, model_version=version, sources=_sources(sources))
    return found


def store(entries: Iterable[Entry]) -> int:
    """Write answers; an existing entry for the same owner and key is replaced (and renewed)."""
    if not enabled():
        return 0
    now = timezone.now()
    latest = {(e.owner_id, e.key): e for e in entries}  # one row per key in one statement
    objs = [
        CachedAnswer(owner_id=e.owner_id, key=e.key, model_name=e.model[:100],
                     output=e.response.text, finish_reason=e.response.finish_reason[:40],
                     model_version=e.response.model_version[:100],
                     prompt_tokens=e.response.prompt_tokens,
                     output_tokens=e.response.output_tokens, created_at=now,
                     sources=[s.as_dict() for s in e.response.sources] or None)
        # In key order, so two writers upserting the same keys lock them in the same order.
        for _, e in sorted(latest.items())
    ]
    if objs:
        CachedAnswer.objects.bulk_create(
            objs, batch_size=LOOKUP_CHUNK, update_conflicts=True,
            unique_fields=["owner", "key"],
            update_fields=["model_name", "output", "finish_reason", "model_version",
                           "prompt_tokens", "output_tokens", "sources", "created_at"],
        )
    return len(objs)


def _sources(stored: object) -> tuple[Source, ...]:
    """A cached answer's sources as stored ([{"uri", "title"}]), back as Source objects."""
    if not isinstance(stored, list):
        return ()
    return tuple(Source(str(s.get("uri", "")), str(s.get("title", "")))
                 for s in stored if isinstance(s, dict) and s.get("uri"))


def purge_expired() -> int:
    """Delete expired entries (none while the cache is off: turning it back on finds them)."""
    if not enabled():
        return 0
    return CachedAnswer.objects.filter(created_at__lt=fresh_after()).delete()[0]
