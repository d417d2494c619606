"""POST actions on a batch: each calls its service, says what changed, and goes back."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from batches import batch_rows, services
from batches.models import Batch
from batches.web.forms import RowsUploadForm
from batches.web.pages import _get_batch_or_404, _progress_context
from batches.web.results import answer_columns, decorate, shown_columns


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _back(request: HttpRequest, batch: Batch) -> HttpResponse:
    """Back to where the form was (a filtered results page), if that is a page of this site."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("batch_detail", kwargs={"batch_id": batch.pk})
    return redirect(target)


def _act(request: HttpRequest, batch_id: int, action: Callable[[Batch], str]) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    try:
        message = action(batch)
    except services.ServiceError as err:
        messages.error(request, err.message)
    else:
        messages.success(request, message)
    return _back(request, batch)


def _cancel(batch: Batch) -> str:
    n = services.batch_cancel(batch=batch)
    return f"Cancelled {_plural(n, 'pending row')}; rows already running will finish."


def _pause(batch: Batch) -> str:
    n = services.batch_pause(batch=batch)
    return f"Paused; {_plural(n, 'row')} waiting. Rows already running will finish."


def _resume(batch: Batch) -> str:
    n = services.batch_resume(batch=batch)
    return f"Resumed; {_plural(n, 'row')} put back in the queue." if n else "Resumed."


def _retry_failed(batch: Batch) -> str:
    n = services.batch_retry_failed(batch=batch)
    return f"Retrying {_plural(n, 'failed row')}."


@login_required
@require_POST
def batch_cancel(request: HttpRequest, batch_id: int) -> HttpResponse:
    return _act(request, batch_id, _cancel)


@login_required
@require_POST
def batch_pause(request: HttpRequest, batch_id: int) -> HttpResponse:
    return _act(request, batch_id, _pause)


@login_required
@require_POST
def batch_resume(request: HttpRequest, batch_id: int) -> HttpResponse:
    return _act(request, batch_id, _resume)


@login_required
@require_POST
def batch_retry_failed(request: HttpRequest, batch_id: int) -> HttpResponse:
    return _act(request, batch_id, _retry_failed)


@login_required
@require_POST
def batch_retry_row(request: HttpRequest, batch_id: int, index: int) -> HttpResponse:
    if request.htmx:
        return _retry_row_in_place(request, batch_id, index)

    def retry(batch: Batch) -> str:
        row = services.batch_retry_row(batch=batch, index=index)
        return f"Retrying row {row.row_number}."

    return _act(request, batch_id, retry)


def _retry_row_in_place(request: HttpRequest, batch_id: int, index: int) -> HttpResponse:
    """The retried row (pending now) in place of the old one, and the progress card, which
    polls again and carries the row's answer in when it comes."""
    batch = _get_batch_or_404(request, batch_id)
    try:
        services.batch_retry_row(batch=batch, index=index)
    except services.ServiceError as err:
        response = HttpResponse(err.message, status=409, content_type="text/plain")
        return response
    batch.refresh_from_db()
    row = batch.results.get(index=index)
    decorate([row], shown_columns(request, batch), answer_columns(batch))
    context = {"row": row, "batch": batch, "current_path": request.POST.get("next", ""),
               "progress_oob": True}
    context.update(_progress_context(batch))
    return render(request, "batches/partials/batch_detail_row_retried.html", context)


@login_required
@require_POST
def batch_delete(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    name, total = batch.display_name, batch.total_rows
    services.batch_delete(batch=batch)
    messages.success(request, f"Deleted “{name}” and its {_plural(total, 'row')}.")
    return redirect("dashboard")


@login_required
@require_POST
def batch_add_rows(request: HttpRequest, batch_id: int) -> HttpResponse:
    """"Add rows" on the batch page: spreadsheets or documents, like the new-batch page."""
    batch = _get_batch_or_404(request, batch_id)
    form = RowsUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return _back(request, batch)
    try:
        added = batch_rows.batch_add_rows(batch=batch, **form.upload_kwargs())
    except services.ServiceError as err:
        messages.error(request, err.message)
    else:
        messages.success(request, f"Added {_plural(added, 'row')}; the batch is "
                                  f"{batch.get_status_display().lower()}.")
        for warning in getattr(batch, "warnings", []):
            messages.warning(request, warning)
    return _back(request, batch)


@login_required
@require_POST
def batch_delete_row(request: HttpRequest, batch_id: int, index: int) -> HttpResponse:
    def remove(batch: Batch) -> str:
        row = batch.results.filter(index=index).first()
        batch_rows.batch_delete_row(batch=batch, index=index)
        return f"Removed row {row.row_number}." if row else "Removed the row."

    return _act(request, batch_id, remove)
