"""Submitting a batch-mode batch's pending rows as Gemini Batch Mode jobs.

Rows are claimed like a slice claims them (one short transaction, the count decides) but with
a lease of BATCH_MODE_LEASE and a token that is the job's: the `ProviderJob` is created in the
same transaction, so a worker that dies before the job reaches the provider leaves a job
"SUBMITTING" that the poller returns. A job holds at most BATCH_MODE_MAX_ROWS rows and
BATCH_MODE_MAX_BYTES of requests; below BATCH_MODE_INLINE_BYTES they travel in the create call,
above it as a JSONL file through the Files API. Each request is keyed by its row's id.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batches import costs, notifications
from batches.batchmode import client
from batches.engine import db
from batches.models import Batch, BatchResult, Mode, ProviderJob
from batches.providers import ConfigurationError, PermanentError, Request, RetryableError

log = logging.getLogger("batches.batchmode")


@dataclass
class SubmitReport:
    jobs: list[str] = field(default_factory=list)
    rows: int = 0
    online: bool = False  # rows wait for the online engine
    error: str = ""
    continued: bool = False  # out of time with rows left: a continuation is due


@dataclass
class _Claimed:
    job: ProviderJob
    rows: list[tuple]  # (id, prompt, attempts, repair)
    reserved: int
    keys: tuple[str, ...]


def submit(batch_id: int, *, deadline: float = math.inf) -> SubmitReport:
    """Send the batch's claimable rows in as many jobs as they need, until `deadline`
    (time.monotonic()): a task must end well before django-q2's timeout."""
    report = SubmitReport()
    report.online = db.claimable(BatchResult.objects.filter(batch_id=batch_id, online=True),
                                 timezone.now()).exists()
    while True:
        if time.monotonic() >= deadline:
            report.continued = True
            break
        claimed = _claim(batch_id)
        if claimed is None:
            break
        try:
            name = _send(claimed)
        except RetryableError as exc:
            _abandon(claimed, exc.message)
            report.error = exc.message
            log.warning("Submitting a batch job for batch %s failed: %s", batch_id, exc.message)
            break
        except (PermanentError, ConfigurationError) as exc:
            _abandon(claimed, exc.message)
            report.error = exc.message
            _fail_batch(batch_id, f"Gemini batch mode refused the job: {exc.message}")
            break
        report.jobs.append(name)
        report.rows += len(claimed.rows)
    return report


def _claim(batch_id: int) -> _Claimed | None:
    """Claim up to BATCH_MODE_MAX_ROWS rows for one new job (and create it), or None."""
    with transaction.atomic():
        batch = (db.runnable_batches().select_for_update()
                 .filter(pk=batch_id, mode=Mode.BATCH).exclude(status=db.DRAFT).first())
        if batch is None:
            return None
        now = timezone.now()
        candidates = db.claimable(batch.results.filter(online=False), now).order_by("index")
        n = candidates[:settings.BATCH_MODE_MAX_ROWS].count()
        if not n:
            return None
        token = uuid.uuid4()
        expires = now + timedelta(seconds=settings.BATCH_MODE_LEASE)
        budget = costs.claim_budget(batch, n=n, token=str(token),
                                    expires_at=expires.timestamp(), running=0)
        if budget.pause_message:
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.PAUSED, paused=True,
                                                     last_error=budget.pause_message)
            notifications.record_batch_event(batch.pk, notifications.EventType.PAUSED,
                                             reason=notifications.PauseReason.BUDGET)
            return None
        if budget.rows <= 0:
            return None
        ids = list(candidates.values_list("id", flat=True)[:budget.rows])
        count = BatchResult.objects.filter(id__in=ids, status=db.PENDING).update(
            status=db.RUNNING, claim_token=token, started_at=now, lease_expires_at=expires)
        costs.trim(budget, str(token), count)
        if not count:
            return None
        job = ProviderJob.objects.create(batch=batch, claim_token=token, row_count=count,
                                         reserved_per_row=budget.per_row,
                                         budget_keys=list(budget.keys))
        if batch.started_at is None or batch.status == Batch.Status.PENDING:
            Batch.objects.filter(pk=batch.pk, status=Batch.Status.PENDING).update(
                status=Batch.Status.RUNNING, started_at=batch.started_at or now)
        rows = list(BatchResult.objects.filter(batch=batch, status=db.RUNNING, claim_token=token)
                    .order_by("index").values_list("id", "prompt", "attempts", "repair"))
    return _Claimed(job, rows, budget.per_row, budget.keys)


def row_request(batch: Batch, prompt: str, repair: dict | None) -> Request:
    """A row's request, as the online engine sends it; a repair is a further turn."""
    history: tuple[tuple[str, str], ...] = ()
    if repair:
        history, prompt = ((prompt, repair["answer"]),), repair["note"]
    return Request(model=batch.model_name, prompt=prompt, history=history,
                   system_instruction=batch.system_instruction, temperature=batch.temperature,
                   max_output_tokens=batch.max_output_tokens,
                   response_schema=batch.response_schema, thinking=batch.thinking)


def _send(claimed: _Claimed) -> str:
    """Build the job's requests, cut it at BATCH_MODE_MAX_BYTES, and create it."""
    job = claimed.job
    batch = Batch.objects.get(pk=job.batch_id)
    display = f"batchsite-{batch.pk}-{job.pk}"
    lines = client.Lines(row_request(batch, "", None))
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8",
                                     delete=False) as spool:
        try:
            size, kept, inline = 0, 0, []
            for row_id, prompt, _attempts, repair in claimed.rows:
                contents = lines.contents(row_request(batch, prompt, repair))
                text = lines.file_line(contents, str(row_id))
                length = len(text.encode()) + 1
                if kept and size + length > settings.BATCH_MODE_MAX_BYTES:
                    break
                size += length
                kept += 1
                spool.write(text + "\n")
                if size <= settings.BATCH_MODE_INLINE_BYTES:
                    inline.append(lines.inlined(contents, str(row_id)))
            spool.close()
            _release_surplus(claimed, kept)
            if size <= settings.BATCH_MODE_INLINE_BYTES:
                remote = client.create_inline(batch.model_name, inline, display)
                input_file = ""
            else:
                inline.clear()
                input_file = client.upload_jsonl(spool.name, display)
                remote = client.create_from_file(batch.model_name, input_file, display)
        finally:
            os.unlink(spool.name)
    ProviderJob.objects.filter(pk=job.pk).update(
        name=remote.name, state=remote.state, byte_count=size, input_file=input_file,
        submitted_at=timezone.now(), row_count=kept)
    log.info("Batch %s: job %s submitted with %d rows (%d bytes, %s)", batch.pk, remote.name,
             kept, size, "file" if input_file else "inline")
    return remote.name


def _release_surplus(claimed: _Claimed, kept: int) -> None:
    """Rows past the job's byte limit go back to pending for the next job."""
    surplus = [row[0] for row in claimed.rows[kept:]]
    if surplus:
        BatchResult.objects.filter(id__in=surplus, claim_token=claimed.job.claim_token,
                                   status=db.RUNNING).update(
            status=db.PENDING, claim_token=None, lease_expires_at=None)
        costs.settle([(claimed.keys, str(claimed.job.claim_token),
                       claimed.reserved * len(surplus), 0)])
        claimed.rows = claimed.rows[:kept]


def _abandon(claimed: _Claimed, error: str) -> None:
    """The job never reached the provider: its rows go back to pending, no attempt spent."""
    token = claimed.job.claim_token
    BatchResult.objects.filter(claim_token=token, status=db.RUNNING).update(
        status=db.PENDING, claim_token=None, lease_expires_at=None)
    costs.settle([(claimed.keys, str(token), claimed.reserved * len(claimed.rows), 0)])
    ProviderJob.objects.filter(pk=claimed.job.pk).update(
        state="NOT_SUBMITTED", error=error[:2000], finished_at=timezone.now(),
        returned_rows=len(claimed.rows))


def _fail_batch(batch_id: int, message: str) -> None:
    events = db.BatchEvents()
    events.failures[batch_id] = message
    db.write_outcomes([], events)
