"""Pages: the dashboard and the batch page, each serving its htmx fragments too.

The new-batch page lives in new.py, the POST actions in actions.py, the results table's rows
and columns in results.py."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from batches import costs, iterations, outputs
from batches.documents import DOCUMENT_COLUMNS
from batches.lib.snapshots import one_snapshot
from batches.models import Batch, BatchResult, Progress, RowTally, row_counts
from batches.web.iterate_panel import panel_context
from batches.web.results import (
    RESULT_FILTERS,
    changed_rows,
    parse_seen,
    results_page,
    search_query,
    searched_counts,
)

DASHBOARD_PAGE_SIZE = 25
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

class DashboardRow(RowTally):
    """One batch in the list: its tally (live for active batches, stored for finished ones)."""

    def __init__(self, batch: Batch, counts: dict[str, int]):
        super().__init__(counts)
        self.batch = batch

    @property
    def created_ago(self) -> str:
        """"just now" for the first minute, then "3 minutes ago" (never "0 minutes ago")."""
        if timezone.now() - self.batch.created_at < timedelta(minutes=1):
            return "just now"
        return f"{timesince(self.batch.created_at)} ago"

    @property
    def spent(self) -> str:
        b = self.batch
        text = costs.format_money(None if b.unpriced_rows and not b.costed_rows else b.cost_spent)
        return f"{text} of {costs.format_money(b.budget)}" if b.budget is not None else text

    @property
    def bar(self) -> list[tuple[str, float]]:
        """Segments of the progress bar: (status, percent of all rows)."""
        return [("succeeded", self.share(self.succeeded)), ("failed", self.share(self.failed)),
                ("cancelled", self.share(self.cancelled))]


def _dashboard_rows(batches: list[Batch]) -> list[DashboardRow]:
    counts = row_counts(batches)
    return [DashboardRow(b, counts[b.pk]) for b in batches]


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    batches = Batch.objects.visible_to(request.user).select_related("owner")
    page = Paginator(batches, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = _dashboard_rows(list(page.object_list))
    any_active = any(r.batch.is_active for r in rows)
    context = {"page": page, "rows": rows, "any_active": any_active,
               "show_owner": request.user.is_staff,
               "month": costs.user_month(request.user.pk)}
    if _wants_fragment(request):
        response = render(request, "batches/partials/dashboard_rows.html", context)
        if not any_active:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "batches/dashboard.html", context)


# Batch page ----------------------------------------------------------------------------------

def _view_status(value: str | None) -> str:
    return value if value in RESULT_FILTERS else "all"


class FilterChip(NamedTuple):
    name: str
    count: int
    query: str  # the chip's query string: its status and the view's search, encoded


def _query_string(**params: str) -> str:
    """The non-empty params as a query string; QueryDict encodes the user's search text."""
    encoded = QueryDict(mutable=True)
    for name, value in params.items():
        if value:
            encoded[name] = value
    return encoded.urlencode()


def _filters(counts: dict[str, int], query: str) -> list[FilterChip]:
    """The status chips; choosing one keeps the search."""
    total = sum(counts.values())
    return [FilterChip(f, total if f == "all" else counts.get(f, 0),
                       _query_string(status=f, q=query))
            for f in RESULT_FILTERS]


SUMMARY_CACHE_S = 60


def _field_summaries(batch: Batch, fields: list, counts: dict[str, int]) -> list:
    """Per-field summaries of the succeeded rows; recomputed only when the counts move, since
    they read every succeeded row's data."""
    if not fields or not counts.get("succeeded"):
        return []
    # created_at too: SQLite may give a deleted batch's id to a new one (another user's).
    key = (f"batch-summary:{batch.pk}:{batch.created_at.timestamp()}:"
           f"{counts['succeeded']}:{counts['failed']}")
    summaries = cache.get(key)
    if summaries is None:
        rows = (batch.results.filter(status=BatchResult.Status.SUCCEEDED).order_by()
                .values_list("data", flat=True).iterator(chunk_size=2000))
        summaries = outputs.summarise(fields, rows)
        cache.set(key, summaries, SUMMARY_CACHE_S)
    return summaries


def _export_links(batch: Batch, status: str, query: str) -> list[tuple[str, str]]:
    """Download links; from a filtered or searched view they export the rows that view shows."""
    base = reverse("api:batch-export", kwargs={"pk": batch.pk})
    status = "" if status == "all" else status
    return [(label, f"{base}?{_query_string(format=fmt, status=status, q=query)}")
            for fmt, label in EXPORT_FORMATS]


def _results_context(request: HttpRequest, batch: Batch, counts: dict[str, int]) -> dict:
    status = _view_status(request.GET.get("status"))
    tally = RowTally(counts)
    fields = batch.output_fields
    results = results_page(request, batch, counts, status, _page_number(request))
    return {
        "batch": batch,
        "output_fields": fields,
        "summaries": _field_summaries(batch, fields, counts),
        "results": results,
        "filters": _filters(results.counts, results.query),
        "current_path": request.get_full_path(),
        "can_download": tally.processed > 0,
        "export_links": _export_links(batch, status, results.query),
    }


def _progress_context(batch: Batch, progress: Progress | None = None) -> dict:
    progress = progress or batch.progress()
    counts = progress.counts
    return {
        "batch": batch,
        "cache": iterations.cache_figures(batch),
        "progress": progress,
        "counts": counts,
        "can_pause": batch.status in (Batch.Status.PENDING, Batch.Status.RUNNING)
        and not batch.cancel_requested,
        "can_resume": batch.status in (Batch.Status.PAUSED, Batch.Status.FAILED),
        # Any finished batch with rows left cancelled can run them; it is never a dead end.
        "can_run_cancelled": batch.is_finished and counts["cancelled"] > 0,
        "can_cancel": batch.is_active and not batch.cancel_requested,
        "can_retry_failed": counts["failed"] > 0,
        "warnings": [w for w in batch.last_error.splitlines() if w.strip()],
        "spend": costs.batch_spend(batch, counts["pending"] + counts["running"]),
        "month": costs.user_month(batch.owner_id),
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
    context.update(
        can_add_rows=batch.status != Batch.Status.CANCELLED and not batch.cancel_requested,
        documents_batch=batch.columns == DOCUMENT_COLUMNS,
        uses_files="{{file:" in batch.prompt_template.replace(" ", ""),
    )
    context.update(panel_context(batch))
    return render(request, "batches/batch_detail.html", context)


def progress_response(request: HttpRequest, batch: Batch, seen: dict[int, str] | None,
                      view_status: str = "all", view_query: str = "") -> HttpResponse:
    """The progress fragment, with the results' filter chips and the rows the page shows whose
    state changed, so the counters, the chips and the rows never disagree. `view_status` and
    `view_query` are the page's filter and search, which its chips and downloads keep."""
    # The counters and the changed rows are read from one snapshot, or a row finishing between
    # the two reads would show as succeeded beside a count that does not have it yet.
    with one_snapshot():
        progress = batch.progress()
        rows = changed_rows(request, batch, seen) if seen is not None else []
    context = _progress_context(batch, progress)
    if seen is not None:
        chip_counts = (searched_counts(batch, view_query, fresh=False) if view_query
                       else context["counts"])
        context.update({
            "live_filters": _filters(chip_counts, view_query),
            "live_status": view_status,
            "live_query": view_query,
            "changed_rows": rows,
            "export_links": _export_links(batch, view_status, view_query),
            "can_download": context["progress"].processed > 0,
            "current_path": request.GET.get("view_path", ""),
        })
        fields = batch.output_fields
        if fields:
            context.update(output_fields=fields,
                           summaries=_field_summaries(batch, fields, context["counts"]))
    return render(request, "batches/partials/batch_detail_progress_live.html", context)


@login_required
@require_GET
def batch_detail_progress(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _get_batch_or_404(request, batch_id)
    seen = parse_seen(request.GET.get("seen", "")) if "seen" in request.GET else None
    # A search the page could not use (too long, NUL) is no search there either.
    view_query, _ = search_query(request, "view_q")
    response = progress_response(request, batch, seen, _view_status(request.GET.get("view_status")),
                                 view_query)
    if batch.is_finished and request.htmx:
        # The final fragment has no hx-trigger; 286 stops the poll as well, and the event tells
        # the results table to show the final outputs.
        response.status_code = HttpResponseStopPolling.status_code
        trigger_client_event(response, "batch-ended")
    return response
