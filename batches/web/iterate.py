"""Pages and actions for iterating on a prompt: drafts, sample runs, new versions, compare,
re-running chosen rows. Every view finds its batches through the owner-scoped lookup."""

from __future__ import annotations

from math import ceil

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from batches import iterations, services
from batches.models import Batch
from batches.web.actions import _back, _plural
from batches.web.iterate_panel import DraftForm, NewVersionForm, SampleForm, sample_context
from batches.web.pages import _get_batch_or_404, _page_number

COMPARE_PAGE_SIZE = 50


def _form_errors(form) -> str:
    return " ".join(f"{form.fields[f].label or f.replace('_', ' ').capitalize()}: {e}"
                    if f in form.fields else e
                    for f, errors in form.errors.items() for e in errors)


def _to_detail(batch: Batch) -> HttpResponse:
    return redirect("batch_detail", batch_id=batch.pk)


@login_required
@require_POST
def batch_draft_edit(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    form = DraftForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _to_detail(batch)
    try:
        iterations.batch_edit_draft(batch=batch, **form.service_kwargs())
    except services.ServiceError as err:
        messages.error(request, err.message)
    else:
        messages.success(request, "Saved. Try it on a few rows, or start the batch.")
    return _to_detail(batch)


@login_required
@require_POST
def batch_sample(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    form = SampleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _to_detail(batch)
    try:
        run = iterations.batch_sample(batch=batch, **form.service_kwargs())
    except services.ServiceError as err:
        messages.error(request, err.message)
    else:
        seed = f" (seed {run.seed})" if run.seed is not None else ""
        messages.success(request, f"Trying {_plural(len(run.indexes), 'row')}{seed}.")
    return redirect(reverse("batch_detail", kwargs={"batch_id": batch.pk}) + "#sample")


@login_required
@require_GET
def batch_sample_rows(request: HttpRequest, batch_id: int) -> HttpResponse:
    """The sample's rows next to their inputs; polls itself while any of them runs."""
    batch = _get_batch_or_404(request, batch_id)
    return render(request, "batches/partials/batch_detail_sample.html",
                  sample_context(batch))


@login_required
@require_POST
def batch_start(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    try:
        iterations.batch_start(batch=batch)
    except services.ServiceError as err:
        messages.error(request, err.message)
    else:
        messages.success(request, f"Started all {_plural(batch.total_rows, 'row')}; rows "
                                  "already answered with the same request come from the cache.")
    return _to_detail(batch)


@login_required
@require_POST
def batch_new_version(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    form = NewVersionForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, _form_errors(form))
        return _to_detail(batch)
    upload = form.cleaned_data["file"]
    try:
        version = iterations.batch_new_version(
            batch=batch, owner=request.user, file=upload,
            filename=upload.name if upload else "", name=form.cleaned_data["name"])
    except services.InvalidInput as err:
        where = f" (line {err.line})" if err.line else ""
        messages.error(request, f"The corrected file was not used{where}: {err.message}")
        return _to_detail(batch)
    messages.success(request, f"New version “{version.display_name}” is a draft: change the "
                              "prompt or settings, try it, then start it.")
    return _to_detail(version)


@login_required
@require_POST
def batch_rerun(request: HttpRequest, batch_id: int) -> HttpResponse:
    """Re-run the ticked rows, every failed row, or every row matching the table's filter."""
    batch = _get_batch_or_404(request, batch_id)
    scope = request.POST.get("scope", "selected")
    try:
        if scope == "selected":
            indexes = [int(v) for v in request.POST.getlist("indexes") if v.isdigit()]
            if not indexes:
                raise services.InvalidInput("Tick the rows to run again first.")
            n = iterations.batch_rerun_rows(batch=batch, indexes=indexes)
        else:
            status = request.POST.get("status", "all") if scope == "filter" else "failed"
            rows = batch.results.all()
            if status != "all":
                rows = rows.filter(status=status)
            if batch.is_draft:
                raise services.ActionNotAllowed("The batch is a draft; try rows on a sample "
                                                "run instead, or start it.")
            n = iterations.results_rerun(results=rows)
    except services.ServiceError as err:
        messages.error(request, err.message)
    else:
        messages.success(request, f"Running {_plural(n, 'row')} again (not from the cache).")
    return _back(request, batch)


@login_required
@require_GET
def batch_compare(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    other = _other(request, batch)
    if other is None:
        return render(request, "batches/batch_compare.html", {
            "batch": batch, "choices": _choices(request, batch)})
    changed_only = request.GET.get("changed") == "1"
    number = _page_number(request)
    comparison = iterations.compare_batches(
        other, batch, changed_only=changed_only, offset=(number - 1) * COMPARE_PAGE_SIZE,
        limit=COMPARE_PAGE_SIZE)
    pages = max(1, ceil(comparison.listed / COMPARE_PAGE_SIZE))
    return render(request, "batches/batch_compare.html", {
        "batch": batch, "other": other, "comparison": comparison, "changed_only": changed_only,
        "number": number, "num_pages": pages, "has_next": number < pages,
    })


@login_required
@require_GET
def batch_compare_export(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    other = _other(request, batch)
    if other is None:
        return redirect("batch_compare", batch_id=batch.pk)
    response = StreamingHttpResponse(
        iterations.compare_csv(other, batch, changed_only=request.GET.get("changed") == "1"),
        content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(
        True, f"compare-{other.pk}-{batch.pk}.csv")
    return response


def _other(request: HttpRequest, batch: Batch) -> Batch | None:
    """The batch to compare with: `?with=`, else the parent (None: neither); it must be
    visible to the user."""
    raw = request.GET.get("with", "") or str(batch.parent_id or "")
    if not raw:
        return None
    if not raw.isdigit():
        raise Http404("No such batch.")
    return get_object_or_404(Batch.objects.visible_to(request.user), pk=int(raw))


COMPARE_CHOICES = 100


def _choices(request: HttpRequest, batch: Batch) -> list[Batch]:
    """Batches to offer for a comparison: the user's others, newest first."""
    return list(Batch.objects.filter(owner=batch.owner).exclude(pk=batch.pk)
                .exclude(status=Batch.Status.DRAFT)[:COMPARE_CHOICES])
