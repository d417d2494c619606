"""Services that change a batch's rows after creation: add rows (JSON rows, a spreadsheet, or
documents) and remove a row that has not run. Shared by the page, the API and the CLI; they
build on services (same validation as creation, same reopen), which must not import this."""

from __future__ import annotations

from typing import IO

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max

from batches import prompts
from batches.engine import tasks
from batches.models import Batch, BatchDocument, BatchResult
from batches.services import (
    ActionNotAllowed,
    InvalidInput,
    _check_columns,
    _create_intake_rows,
    _gather,
    _reopen,
    _spooled_intake,
)

Upload = tuple[str, IO[bytes]]


def batch_add_rows(*, batch: Batch, rows: list[dict] | None = None,
                   file: IO[bytes] | None = None, filename: str = "",
                   files: list[Upload] | None = None, documents: list[Upload] | None = None,
                   duplicates: str | None = None, sheet: str | None = None) -> int:
    """Append rows at the next indexes, validated like creation (all or nothing); they run
    with the batch's settings. A finished batch is reopened. Returns the rows added."""
    batch.refresh_from_db()
    if batch.status == Batch.Status.CANCELLED or batch.cancel_requested:
        raise ActionNotAllowed("The batch was cancelled; rows cannot be added to it. "
                               "Resume it first, or start a new batch.")
    if file is None and rows is None and not files and not documents:
        raise InvalidInput("Send rows, a file or documents to add.", field="file")
    template = prompts.parse(batch.prompt_template)
    source, intake = _gather(template, file=file, filename=filename, files=files, rows=rows,
                             documents=documents, duplicates=duplicates, sheet=sheet,
                             batch=batch)
    with intake.staging:  # any error below removes the stored documents again
        _check_columns(intake.table, template, batch.conversation_column)
        # Read and check every row before the transaction (and its write lock) opens.
        spooled = _spooled_intake(intake, template, source, batch.conversation_column)
        with spooled as (spool, _), transaction.atomic():
            locked = Batch.objects.select_for_update().get(pk=batch.pk)
            if locked.status == Batch.Status.CANCELLED or locked.cancel_requested:
                raise ActionNotAllowed("The batch was cancelled; rows cannot be added to it.")
            last = locked.results.aggregate(n=Max("index"))["n"]
            start = 0 if last is None else last + 1
            before = locked.results.count()
            intake.bind(locked)
            added = _create_intake_rows(locked, intake, spool, start=start)
            cap = settings.BATCH_MAX_ROWS
            if cap and before + added > cap:
                raise InvalidInput(f"The batch has {before:,} rows; adding {added:,} would pass "
                                   f"the limit of {cap:,} rows per batch.", field=source)
            columns = list(dict.fromkeys([*locked.columns, *intake.table.columns]))
            Batch.objects.filter(pk=batch.pk).update(total_rows=before + added, columns=columns)
            if locked.is_finished:
                _reopen(locked)
            elif not locked.paused and not locked.is_draft:  # a draft runs on its start
                transaction.on_commit(lambda: tasks.enqueue_batch(batch.pk))
    batch.refresh_from_db()
    batch.warnings = list(intake.table.warnings)
    return added


def batch_delete_row(*, batch: Batch, index: int) -> None:
    """Remove a pending or failed row; the rows after it move up one index (indexes stay
    0..n-1, which paging relies on). Its documents go too unless another row uses them."""
    removable = (BatchResult.Status.PENDING, BatchResult.Status.FAILED)
    with transaction.atomic():
        Batch.objects.select_for_update().filter(pk=batch.pk).first()
        row = batch.results.filter(index=index).first()
        if row is None:
            raise InvalidInput(f"The batch has no row {index}.", field="index")
        if row.status not in removable:
            raise ActionNotAllowed(f"Row {index} is {row.status}; only pending or failed rows "
                                   "can be removed.")
        if batch.results.count() == 1:
            raise ActionNotAllowed("This is the batch's only row; delete the batch instead.")
        # The status guard decides: a worker may have claimed the row since it was read.
        if not batch.results.filter(pk=row.pk, status__in=removable).delete()[0]:
            raise ActionNotAllowed(f"Row {index} has just started running; it cannot be "
                                   "removed now.")
        _close_gap(batch, index)
        if row.document_ids:
            _delete_unused_documents(batch, set(row.document_ids))
        Batch.objects.filter(pk=batch.pk).update(total_rows=batch.results.count())
    batch.refresh_from_db()
    if batch.is_active:
        batch.finalise_if_done()
        return
    batch.refresh_counts()
    if batch.status == Batch.Status.COMPLETED_WITH_ERRORS and not (
            batch.failed_count or batch.cancelled_count):
        # The failed row that made it "with errors" is gone.
        Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.COMPLETED)
        batch.refresh_from_db()


def _close_gap(batch: Batch, index: int) -> None:
    # Two steps through free indexes, so (batch, index) stays unique whatever order the
    # database updates the rows in.
    later = batch.results.filter(index__gt=index)
    top = later.aggregate(n=Max("index"))["n"]
    if top is None:
        return
    offset = top + 1
    later.update(index=F("index") + offset)
    batch.results.filter(index__gt=top).update(index=F("index") - offset - 1)


def _delete_unused_documents(batch: Batch, ids: set[int]) -> None:
    for used in batch.results.values_list("document_ids", flat=True):
        ids -= set(used or ())
        if not ids:
            return
    BatchDocument.objects.filter(batch=batch, pk__in=ids).delete()

