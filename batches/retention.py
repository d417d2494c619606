"""Retention: finished batches whose `finished_at` is older than BATCH_RETENTION_DAYS are
deleted with their rows, stored documents and the result-cache entries no remaining batch uses.

    report = retention.cleanup(dry_run=True)      # what would go; changes nothing
    report = retention.cleanup()                  # delete; the daily schedule calls run()
    retention.deletes_at(batch)                   # when a batch goes (None: kept)

Finished means Batch.FINAL_STATUSES (completed, completed with errors, failed, cancelled);
drafts and pending, running or paused batches are never touched. Each batch goes through
services.batch_delete, the same delete a user makes (documents leave storage on commit,
notification events keep their record with the batch set to null), after its rows have been
deleted in chunks of ROW_CHUNK, each its own short transaction, so a batch of a million rows
never holds one huge transaction.

A cache entry is kept if any remaining batch of the same owner has a row with the rendered
prompt of that entry: a superset of the rows whose key it is, so a kept batch never loses an
answer it could reuse (an entry also expires on its own after RESULT_CACHE_DAYS).

Layer: beside services, which it calls; it must never import web, api, admin or cli.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from batches import resultcache, services
from batches.lib import schedules
from batches.models import Batch, BatchDocument, BatchResult, CachedAnswer
from batches.providers import Request

log = logging.getLogger(__name__)

SCHEDULE_NAME = "batches.retention"
ROW_CHUNK = 5_000  # rows per DELETE: short transactions on a million-row batch
KEY_CHUNK = 500  # keys or prompts per IN (...) query
# Above this many candidate prompts, one streamed pass over the owner's rows is cheaper than
# one IN (...) query per chunk of prompts.
STREAM_ABOVE_PROMPTS = 2_000


@dataclass
class Report:
    days: int | None
    dry_run: bool
    cutoff: datetime | None = None
    batch_ids: list[int] = field(default_factory=list)
    rows: int = 0
    documents: int = 0
    cache_entries: int = 0

    def lines(self) -> list[str]:
        if self.days is None:
            return ["Retention is off (BATCH_RETENTION_DAYS is not set): nothing is deleted."]
        verb = "Would delete" if self.dry_run else "Deleted"
        ids = ", ".join(f"#{pk}" for pk in self.batch_ids) or "none"
        return [
            f"Finished batches older than {self.days} days (finished before "
            f"{self.cutoff:%Y-%m-%d %H:%M} UTC).",
            f"{verb} {len(self.batch_ids)} batches: {ids}",
            f"{verb} {self.rows} rows, {self.documents} stored documents, "
            f"{self.cache_entries} result-cache entries.",
        ]


def retention_days() -> int | None:
    """The configured retention in days; None keeps every batch."""
    days = getattr(settings, "BATCH_RETENTION_DAYS", None)
    return days if days else None


def deletes_at(batch: Batch, days: int | None = None) -> datetime | None:
    """When retention deletes this batch; None while it is not finished or retention is off."""
    days = days if days is not None else retention_days()
    if not days or not batch.is_finished or batch.finished_at is None:
        return None
    return batch.finished_at + timedelta(days=days)


def expired(days: int, now: datetime | None = None) -> QuerySet:
    """Finished batches whose finished_at is more than `days` days ago, oldest first."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return Batch.objects.filter(status__in=Batch.FINAL_STATUSES, finished_at__lt=cutoff
                                ).order_by("finished_at", "pk")


def cleanup(*, days: int | None = None, dry_run: bool = False,
            now: datetime | None = None) -> Report:
    """Delete (or with dry_run only count) the expired batches; `days` overrides the setting."""
    if days is not None and days < 1:
        raise ValueError("days must be at least 1")
    days = days or retention_days()
    report = Report(days=days, dry_run=dry_run)
    if days is None:
        return report
    now = now or timezone.now()
    report.cutoff = now - timedelta(days=days)
    batches = list(expired(days, now))
    candidates: dict[int, dict[str, str]] = defaultdict(dict)  # owner -> {cache key: prompt}
    for batch in batches:
        if batch.use_cache:
            candidates[batch.owner_id].update(_cache_keys(batch))
    for batch in batches:
        pk = batch.pk  # a deleted instance's pk is None
        rows = batch.results.count()
        documents = BatchDocument.objects.filter(batch=batch).count()
        if not dry_run and not _delete(batch, days, now):
            log.info("retention: batch %s changed state before its delete; kept", pk)
            continue
        report.batch_ids.append(pk)
        report.rows += rows
        report.documents += documents
        if not dry_run:
            log.info("retention: deleted batch %s (owner %s, finished %s): %d rows, "
                     "%d documents", pk, batch.owner_id, batch.finished_at, rows,
                     documents)
    # A dry run's batches still have their rows: they must not count as remaining users.
    gone = set(report.batch_ids) if dry_run else set()
    for owner_id, keys in candidates.items():
        orphans = _unused(owner_id, keys, exclude=gone)
        if dry_run:
            report.cache_entries += len(orphans)
            continue
        for start in range(0, len(orphans), KEY_CHUNK):
            report.cache_entries += CachedAnswer.objects.filter(
                owner_id=owner_id, key__in=orphans[start:start + KEY_CHUNK]).delete()[0]
    log.info("retention (%s days%s): %d batches %s, %d rows, %d documents, %d cache entries",
             days, ", dry run" if dry_run else "", len(report.batch_ids), report.batch_ids,
             report.rows, report.documents, report.cache_entries)
    return report


def _delete(batch: Batch, days: int, now: datetime) -> bool:
    """Rows in chunks, then the batch through the user's own delete; False if the batch left
    its finished state (a retry or resume) before this started."""
    still = expired(days, now).filter(pk=batch.pk)
    if not still.update(cancel_requested=True):
        return False
    while True:
        ids = list(BatchResult.objects.filter(batch=batch).order_by()
                   .values_list("pk", flat=True)[:ROW_CHUNK])
        if not ids:
            break
        BatchResult.objects.filter(pk__in=ids).delete()
    services.batch_delete(batch=batch)
    return True


def _cache_keys(batch: Batch) -> dict[str, str]:
    """{cache key: prompt} of the batch's answered rows that are in the owner's cache, keyed
    as the engine keyed them at claim time (batches.engine.reuse)."""
    digests = {pk: [sha, mime] for pk, sha, mime in BatchDocument.objects.filter(batch=batch)
               .values_list("pk", "sha256", "mime_type")}
    history: dict[str, list[tuple[str, str]]] = defaultdict(list)
    keys: dict[str, str] = {}
    rows = (BatchResult.objects.filter(batch=batch, status=BatchResult.Status.SUCCEEDED)
            .order_by("conversation_key", "index")
            .values_list("prompt", "output", "conversation_key", "document_ids"))
    for prompt, output, conversation, documents in rows.iterator(chunk_size=2_000):
        earlier = tuple(history[conversation]) if conversation else ()
        if conversation:
            history[conversation].append((prompt, output))
        request = Request(model=batch.model_name, prompt=prompt, history=earlier,
                          system_instruction=batch.system_instruction,
                          temperature=batch.temperature,
                          max_output_tokens=batch.max_output_tokens,
                          response_schema=batch.response_schema, thinking=batch.thinking)
        if documents:
            if any(d not in digests for d in documents):
                continue  # the engine gave such a row no key
            key = resultcache.cache_key(batch.owner_id, request,
                                        documents=[digests[d] for d in documents])
        else:
            key = resultcache.cache_key(batch.owner_id, request)
        keys[key] = prompt
    stored: dict[str, str] = {}
    listed = sorted(keys)
    for start in range(0, len(listed), KEY_CHUNK):
        for key in CachedAnswer.objects.filter(
                owner_id=batch.owner_id, key__in=listed[start:start + KEY_CHUNK]
        ).values_list("key", flat=True):
            stored[key] = keys[key]
    return stored


def _unused(owner_id: int, keys: dict[str, str], *, exclude: set[int]) -> list[str]:
    """The keys whose prompt no row of the owner's other batches has."""
    if not keys:
        return []
    prompts = set(keys.values())
    rows = BatchResult.objects.filter(batch__owner_id=owner_id).exclude(batch_id__in=exclude)
    used: set[str] = set()
    if len(prompts) > STREAM_ABOVE_PROMPTS:
        for prompt in rows.order_by().values_list("prompt", flat=True).iterator(chunk_size=2_000):
            if prompt in prompts:
                used.add(prompt)
    else:
        listed = sorted(prompts)
        for start in range(0, len(listed), KEY_CHUNK):
            used.update(rows.filter(prompt__in=listed[start:start + KEY_CHUNK]).order_by()
                        .values_list("prompt", flat=True).distinct())
    return sorted(key for key, prompt in keys.items() if prompt not in used)


# django-q2 -------------------------------------------------------------------------------------

def run() -> str:
    """The daily schedule's task: delete what retention says is expired."""
    return " ".join(cleanup().lines())


def ensure_schedule() -> None:
    """Create (or repair) the daily retention schedule. It exists whether or not retention is
    set: the worker's own setting decides what it does."""
    schedules.ensure_schedule(SCHEDULE_NAME, "batches.retention.run")
