"""Polling Batch Mode jobs, writing their results, and the watchdog.

A job's results (inline responses, or a results file streamed to disk and read line by line)
are matched to rows by key (the row id) and written in chunks through the engine's own bulk
write (`db.write_outcomes`): successes, per-row errors (retryable ones back to pending for
another job), tokens and cost at the batch-mode price, structured-output validation and repair.
Only rows still holding the job's claim token are written, so two pollers, or a poller
restarted after a worker died mid-write, change nothing twice. When the results are written,
the rows the job did not mention go back: to pending for the next job, or, when the provider
stalled, expired, failed or cancelled the job and the batch allows it, to the online engine.

The watchdog: a job PENDING or RUNNING past BATCH_MODE_MAX_WAIT is cancelled at the provider
and its unanswered rows go back the same way.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from batches import costs, outputs
from batches.batchmode import client
from batches.engine import db
from batches.engine.answers import _added
from batches.models import Batch, BatchResult, ProviderJob
from batches.providers import PermanentError, ProviderError, Response, RetryableError

log = logging.getLogger("batches.batchmode")

WRITE_CHUNK = 1000  # result lines per bulk write
SUBMIT_GRACE_S = 600.0  # a job still "SUBMITTING" this long lost its worker before the provider
STALLED = "stalled"

Enqueue = Callable[[int], Any]


@dataclass
class PollReport:
    polled: int = 0
    finished: list[str] = field(default_factory=list)
    written: int = 0
    returned: int = 0
    open: int = 0


def poll_lease_s() -> float:
    return max(10.0, 3 * settings.BATCH_MODE_POLL_S)


def open_jobs():
    return ProviderJob.objects.filter(finished_at__isnull=True)


class OutOfTime(Exception):
    """The task's time is spent: the job's results are written on the next poll (the rows
    written so far are skipped then: they no longer hold the job's token)."""


def poll_all(*, enqueue: Enqueue, deadline: float = math.inf) -> PollReport:
    """Poll every open job once; finish those that ended. `deadline` (time.monotonic()) stops
    writing a long results file part way, to be resumed by the next poll."""
    report = PollReport()
    for job_id in list(open_jobs().order_by("id").values_list("id", flat=True)):
        if time.monotonic() >= deadline:
            break
        job = _take(job_id)
        if job is None:
            continue
        try:
            _poll(job, report, enqueue, deadline)
        except OutOfTime:
            log.info("%s: results partly written; the next poll goes on", job)
        except ProviderError as exc:
            log.warning("Polling %s failed: %s", job, exc.message)
            ProviderJob.objects.filter(pk=job.pk).update(error=exc.message[:2000])
        finally:
            ProviderJob.objects.filter(pk=job_id).update(poll_lease_until=None)
    report.open = open_jobs().count()
    return report


def _take(job_id: int) -> ProviderJob | None:
    """The job's poll lease (compare-and-set: the count decides), or None."""
    now = timezone.now()
    won = ProviderJob.objects.filter(pk=job_id, finished_at__isnull=True).exclude(
        poll_lease_until__gt=now).update(poll_lease_until=now + timedelta(seconds=poll_lease_s()))
    return ProviderJob.objects.filter(pk=job_id).first() if won else None


def _poll(job: ProviderJob, report: PollReport, enqueue: Enqueue, deadline: float) -> None:
    now = timezone.now()
    if not job.name:
        if (now - job.created_at).total_seconds() > SUBMIT_GRACE_S:
            _settle(job, ended="LOST", reason=STALLED, enqueue=enqueue, report=report,
                    error="The job never reached the provider (its worker stopped).")
        return
    report.polled += 1
    batch = Batch.objects.filter(pk=job.batch_id).only("cancel_requested").first()
    remote = client.get(job.name)
    ProviderJob.objects.filter(pk=job.pk).update(state=remote.state, last_polled_at=now)
    if remote.state in client.OPEN_STATES:
        waited = (now - (job.submitted_at or job.created_at)).total_seconds()
        if batch is not None and batch.cancel_requested:
            client.cancel(job.name)
        elif waited > settings.BATCH_MODE_MAX_WAIT:
            log.warning("%s has been %s for %.0f s: cancelling it", job, remote.state, waited)
            client.cancel(job.name)
            error = (f"Still {remote.state.removeprefix('JOB_STATE_')} after "
                     f"{_hours(waited)}: cancelled by the watchdog.")
            remote = client.get(job.name)  # what it answered before the cancel is kept
            _collect(job, remote, report, deadline)
            _settle(job, ended=remote.state, reason=STALLED, enqueue=enqueue, report=report,
                    error=error)
        return
    _collect(job, remote, report, deadline)
    reason = "done" if remote.state == "JOB_STATE_SUCCEEDED" else STALLED
    error = "" if reason == "done" else f"The provider ended the job: {remote.state}."
    _settle(job, ended=remote.state, reason=reason, enqueue=enqueue, report=report, error=error)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


# Results --------------------------------------------------------------------------------------

def _collect(job: ProviderJob, remote: client.RemoteJob, report: PollReport,
             deadline: float) -> None:
    """Write whatever results the job has, in chunks."""
    if remote.inline is not None:
        _write_items(job, iter(remote.inline), report, deadline)
    elif remote.file_name:
        fd, path = tempfile.mkstemp(suffix=".jsonl", prefix="batchmode-")
        os.close(fd)
        try:
            client.download(remote.file_name, path)
            _write_items(job, client.read_lines(path), report, deadline)
        finally:
            os.unlink(path)


def _write_items(job: ProviderJob, items: Iterator[dict], report: PollReport,
                 deadline: float) -> None:
    batch = Batch.objects.get(pk=job.batch_id)
    while chunk := _take_n(items, WRITE_CHUNK):
        if time.monotonic() >= deadline:
            raise OutOfTime
        # The rows and the job's counts in one transaction: a worker killed between them
        # would otherwise leave counts that miss rows written.
        with transaction.atomic():
            succeeded, failed = write_chunk(batch, job, chunk)
            ProviderJob.objects.filter(pk=job.pk).update(
                succeeded_rows=F("succeeded_rows") + succeeded,
                failed_rows=F("failed_rows") + failed,
                poll_lease_until=timezone.now() + timedelta(seconds=poll_lease_s()))
        report.written += succeeded + failed


def _take_n(items: Iterator[dict], n: int) -> list[dict]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= n:
            break
    return chunk


def write_chunk(batch: Batch, job: ProviderJob, items: list[dict]) -> tuple[int, int]:
    """Write one chunk of result lines; returns (succeeded, failed or retried) rows written."""
    by_key: dict[int, dict] = {}
    for item in items:
        try:
            by_key[int(item.get("key"))] = item
        except (TypeError, ValueError):
            log.warning("%s: a result line with an unknown key %r", job, item.get("key"))
    held = BatchResult.objects.filter(id__in=list(by_key), batch_id=batch.pk,
                                      claim_token=job.claim_token, status=db.RUNNING)
    settings_ = db._settings_of(batch, batch_mode=True)
    outcomes, repairs = [], []
    for row_id, index, prompt, attempts, repair in held.values_list(
            "id", "index", "prompt", "attempts", "repair"):
        row = db.ClaimedRow(id=row_id, batch=settings_, index=index, prompt=prompt,
                            conversation_key="", attempts=attempts, token=job.claim_token,
                            reserved=job.reserved_per_row,
                            budget_keys=tuple(job.budget_keys or ()))
        outcome = _outcome(row, by_key[row_id], repair)
        if isinstance(outcome, tuple):
            repairs.append(outcome)
        else:
            outcomes.append(outcome)
    db.write_outcomes(outcomes)
    for row, note, response in repairs:
        _send_for_repair(batch, job, row, note, response)
    succeeded = sum(1 for o in outcomes if o.kind is db.Kind.SUCCEEDED)
    return succeeded, len(outcomes) + len(repairs) - succeeded


def _outcome(row: db.ClaimedRow, item: dict, repair: dict | None):
    """The row's Outcome, or (row, note, response) when its answer goes back for repair."""
    try:
        response = client.response_of(item, row.batch.model)
    except RetryableError as exc:
        if row.attempts + 1 > row.batch.max_retries:
            return db.Outcome(row, db.Kind.FAILED, error=exc.message)
        return db.Outcome(row, db.Kind.RETRY, error=exc.message)
    except PermanentError as exc:
        return db.Outcome(row, db.Kind.FAILED, error=exc.message)
    first = _stored_response(repair)
    calls = (first, response) if first else ()
    extra = 0  # a repair's first answer spent its attempt when it was sent back
    billed = _added(first, response) if first else response
    schema = row.batch.response_schema
    if schema is None:
        return db.Outcome(row, db.Kind.SUCCEEDED, response=billed, calls=calls,
                          extra_attempts=extra)
    try:
        data = outputs.check_answer(response.text, schema)
    except outputs.AnswerMismatch as mismatch:
        if first or row.attempts + 1 > row.batch.max_retries:
            return db.Outcome(row, db.Kind.FAILED, error=mismatch.message, response=billed,
                              calls=calls, extra_attempts=extra)
        return (row, outputs.repair_note(mismatch), response)
    return db.Outcome(row, db.Kind.SUCCEEDED, response=billed, data=data, calls=calls,
                      extra_attempts=extra)


def _stored_response(repair: dict | None) -> Response | None:
    if not repair:
        return None
    usage = repair.get("usage") or {}
    return Response(text=repair["answer"], finish_reason=usage.get("finish_reason", "STOP"),
                    prompt_tokens=usage.get("prompt_tokens"),
                    output_tokens=usage.get("output_tokens"),
                    model_version=usage.get("model_version", ""),
                    thoughts_tokens=usage.get("thoughts_tokens"))


def _send_for_repair(batch: Batch, job: ProviderJob, row: db.ClaimedRow, note: str,
                     response: Response) -> None:
    """The answer did not match the schema: the row goes back with a repair turn for its next
    job, or to the online engine (which repairs on its own) when the batch allows it."""
    mine = BatchResult.objects.filter(pk=row.id, claim_token=job.claim_token, status=db.RUNNING)
    released = dict(claim_token=None, lease_expires_at=None, attempts=F("attempts") + 1)
    if job.budget_keys:
        costs.release(tuple(job.budget_keys), str(job.claim_token), job.reserved_per_row)
    if batch.fallback_online:
        mine.update(status=db.PENDING, online=True, error=note[:2000], **released)
        return
    usage = {"prompt_tokens": response.prompt_tokens, "output_tokens": response.output_tokens,
             "thoughts_tokens": response.thoughts_tokens, "finish_reason": response.finish_reason,
             "model_version": response.model_version}
    mine.update(status=db.PENDING, repair={"answer": response.text, "note": note,
                                           "usage": usage}, error=note[:2000], **released)


# Ending a job ---------------------------------------------------------------------------------

def _settle(job: ProviderJob, *, ended: str, reason: str, enqueue: Enqueue,
            report: PollReport, error: str = "") -> None:
    """Send the rows the job still holds back, and close the job (exactly once)."""
    now = timezone.now()
    batch = Batch.objects.filter(pk=job.batch_id).first()
    if batch is None:
        return
    held = BatchResult.objects.filter(batch_id=batch.pk, claim_token=job.claim_token,
                                      status=db.RUNNING)
    released = dict(claim_token=None, lease_expires_at=None, not_before=None)
    online = reason == STALLED and batch.fallback_online and not batch.cancel_requested
    if batch.cancel_requested:
        returned = held.update(status=BatchResult.Status.CANCELLED, finished_at=now,
                               error="Cancelled before it ran.", **released)
    else:
        returned = held.update(status=db.PENDING, online=online, **released)
    closed = ProviderJob.objects.filter(pk=job.pk, finished_at__isnull=True).update(
        state=ended, finished_at=now, returned_rows=F("returned_rows") + returned,
        error=error[:2000])
    if returned and job.budget_keys:
        # Their budget reservations (made at submit) go; the next claim reserves again.
        costs.release(tuple(job.budget_keys), str(job.claim_token),
                      job.reserved_per_row * returned)
    if closed:
        report.finished.append(job.name or str(job.pk))
        report.returned += returned
        if online and returned:
            note = (f"Gemini batch job {job.name or job.pk} {error or 'stalled'} Its {returned:,} "
                    "unanswered rows run online at the online price.")
            Batch.objects.filter(pk=batch.pk).update(last_error=note[:2000])
    db.finalise([batch.pk])
    if returned and not batch.cancel_requested:
        enqueue(batch.pk)


def fallback_rows(batch_ids: Iterable[int]) -> dict[int, int]:
    """Rows per batch handed to the online engine (for reports)."""
    counts: dict[int, int] = {}
    for batch_id in batch_ids:
        counts[batch_id] = BatchResult.objects.filter(batch_id=batch_id, online=True).count()
    return counts


def cancel_open_jobs(batch_id: int | None = None, names: Iterable[str] = ()) -> int:
    """Cancel a batch's open jobs (or the named ones) at the provider; the poller then writes
    what they answered before the cancel and cancels the rest. Returns the jobs cancelled."""
    wanted = list(names)
    if batch_id is not None:
        wanted += list(open_jobs().filter(batch_id=batch_id).exclude(name="")
                       .values_list("name", flat=True))
    done = 0
    for name in wanted:
        try:
            client.cancel(name)
            done += 1
        except ProviderError as exc:
            log.warning("Cancelling %s failed: %s", name, exc.message)
    return done

