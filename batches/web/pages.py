"""Pages: the dashboard and the batch page, each serving its htmx fragments too.

The new-batch page lives in views_new.py, the POST actions in views_actions.py."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from batches import iterations
from batches.models import Batch, BatchResult
from batches.prompts import format_value
from batches.web.iterate_panel import panel_context

DASHBOARD_PAGE_SIZE = 25
RESULTS_PAGE_SIZE = 50
RESULT_FILTERS = ["all", "succeeded", "failed", "pending", "running", "cancelled"]
COMPACT_INPUT_CHARS = 160
LONG_OUTPUT_CHARS = 280
EXPORT_FORMATS = [("csv", "CSV"), ("jsonl", "JSONL"), ("xlsx", "XLSX")]


def _get_batch_or_404(request: HttpRequest, batch_id: int) -> Batch:
    """The batch if the user may see it; other users' batches do not exist for them."""
    return get_object_or_404(Batch.objects.visible_to(request.user), pk=batch_id)


def _wants_fragment(request: HttpRequest) -> bool:
    # A history restore (back button after hx-push-url) needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


# Dashboard -----------------------------------------------------------------------------------

@dataclass
class DashboardRow:
    batch: Batch
    succeeded: int
    failed: int
    cancelled: int
    total: int

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def percent(self) -> float:
        return self._share(self.done) if self.total else 100.0

    def _share(self, n: int) -> float:
        return round(100 * n / self.total, 1) if self.total else 0.0

    @property
    def bar(self) -> list[tuple[str, float]]:
        """Segments of the progress bar: (status, percent of all rows)."""
        return [("succeeded", self._share(self.succeeded)), ("failed", self._share(self.failed)),
                ("cancelled", self._share(self.cancelled))]


def _dashboard_rows(batches: list[Batch]) -> list[DashboardRow]:
    """Live counts for active batches (one grouped query), the stored ones for finished batches."""
    active_ids = [b.pk for b in batches if b.is_active]
    live: dict[int, dict[str, int]] = {pk: {} for pk in active_ids}
    if active_ids:
        grouped = (
            BatchResult.objects.filter(batch_id__in=active_ids).order_by()
            .values_list("batch_id", "status").annotate(n=Count("id"))
        )
        for batch_id, status, n in grouped:
            live[batch_id][status] = n
    rows = []
    for b in batches:
        if b.pk in live:
            c = live[b.pk]
            rows.append(DashboardRow(b, c.get("succeeded", 0), c.get("failed", 0),
                                     c.get("cancelled", 0), sum(c.values()) or b.total_rows))
        else:
            rows.append(DashboardRow(b, b.succeeded_count, b.failed_count, b.cancelled_count,
                                     b.total_rows))
    return rows


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    batches = Batch.objects.visible_to(request.user).select_related("owner")
    page = Paginator(batches, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = _dashboard_rows(list(page.object_list))
    any_active = any(r.batch.is_active for r in rows)
    context = {"page": page, "rows": rows, "any_active": any_active,
               "show_owner": request.user.is_staff}
    if _wants_fragment(request):
        response = render(request, "batches/partials/dashboard_rows.html", context)
        if not any_active:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "batches/dashboard.html", context)


# Batch page ----------------------------------------------------------------------------------

def _compact_input(values: dict) -> str:
    if isinstance(values, dict):
        text = " · ".join(f"{k}: {format_value(v)}" for k, v in values.items())
    else:
        text = format_value(values)
    text = " ".join(text.split())
    if len(text) > COMPACT_INPUT_CHARS:
        text = text[: COMPACT_INPUT_CHARS - 1] + "…"
    return text


@dataclass
class ResultsPage:
    status: str
    number: int
    num_pages: int
    total: int
    rows: list[BatchResult]

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages

    @property
    def first_index(self) -> int:
        return (self.number - 1) * RESULTS_PAGE_SIZE + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.number * RESULTS_PAGE_SIZE, self.total)


def _results_page(batch: Batch, counts: dict[str, int], status: str, number: int) -> ResultsPage:
    # The page count comes from the per-status counts, so no COUNT(*) over a huge batch per page.
    total = sum(counts.values()) if status == "all" else counts.get(status, 0)
    num_pages = max(1, ceil(total / RESULTS_PAGE_SIZE))
    number = min(number, num_pages)
    start = (number - 1) * RESULTS_PAGE_SIZE
    rows = batch.results.order_by("index").defer("prompt", "claim_token", "lease_expires_at")
    if status == "all":
        # Row indexes run 0..n-1 without gaps, so a page is an index range rather than an OFFSET.
        rows = rows.filter(index__gte=start, index__lt=start + RESULTS_PAGE_SIZE)
    else:
        rows = rows.filter(status=status)[start:start + RESULTS_PAGE_SIZE]
    rows = list(rows)
    for row in rows:
        row.compact_input = _compact_input(row.input)
        row.output_is_long = len(row.output) > LONG_OUTPUT_CHARS or row.output.count("\n") > 4
        row.output_head = row.output[:120].split("\n", 1)[0]
    return ResultsPage(status, number, num_pages, total, rows)


def _results_context(request: HttpRequest, batch: Batch, counts: dict[str, int]) -> dict:
    status = request.GET.get("status", "all")
    if status not in RESULT_FILTERS:
        status = "all"
    filters = [(f, sum(counts.values()) if f == "all" else counts.get(f, 0))
               for f in RESULT_FILTERS]
    return {
        "batch": batch,
        "results": _results_page(batch, counts, status, _page_number(request)),
        "filters": filters,
        "current_path": request.get_full_path(),
    }


def _progress_context(batch: Batch) -> dict:
    progress = batch.progress()
    counts = progress.counts
    return {
        "batch": batch,
        "cache": iterations.cache_figures(batch),
        "progress": progress,
        "counts": counts,
        "can_pause": batch.status in (Batch.Status.PENDING, Batch.Status.RUNNING)
        and not batch.cancel_requested,
        "can_resume": batch.status in (Batch.Status.PAUSED, Batch.Status.CANCELLED,
                                       Batch.Status.FAILED),
        "can_cancel": batch.is_active and not batch.cancel_requested,
        "can_retry_failed": counts["failed"] > 0,
        "can_download": progress.done > 0,
        "export_url": reverse("api:batch-export", kwargs={"pk": batch.pk}),
        "export_formats": EXPORT_FORMATS,
        "warnings": [w for w in batch.last_error.splitlines() if w.strip()],
    }


@login_required
@require_GET
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    if _wants_fragment(request):
        counts = batch.status_counts()
        return render(request, "batches/partials/batch_detail_results.html",
                      _results_context(request, batch, counts))
    context = _progress_context(batch)
    context.update(_results_context(request, batch, context["counts"]))
    context.update(panel_context(batch))
    return render(request, "batches/batch_detail.html", context)


@login_required
@require_GET
def batch_detail_progress(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    response = render(request, "batches/partials/batch_detail_progress.html",
                      _progress_context(batch))
    if batch.is_finished and request.htmx:
        # The final fragment has no hx-trigger; 286 stops the poll as well, and the event tells
        # the results table to show the final outputs.
        response.status_code = HttpResponseStopPolling.status_code
        trigger_client_event(response, "batch-ended")
    return response
