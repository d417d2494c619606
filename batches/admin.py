"""Operator admin: find batches and rows, and repair them through the same services as the pages."""

from __future__ import annotations

import json
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Case, F, IntegerField, OuterRef, QuerySet, Subquery, Sum, When
from django.db.models.functions import Coalesce, Left
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext

from batches import costs, iterations, retention, services
from batches.models import (
    Batch,
    BatchResult,
    CachedAnswer,
    ModelPrice,
    MonthlySpend,
    ProviderJob,
    RowTally,
    UserBudget,
    UserSettings,
)
from batches.notifications import admin as notifications_admin  # noqa: F401 (registers)
from batches.status_counts import BatchStatusCount

PREVIEW_CHARS = 80

admin.site.site_header = "Batchsite administration"
admin.site.site_title = "Batchsite admin"
admin.site.index_title = "Batches, rows and users"
RESULTS_BATCH_PARAM = "batch__id__exact"


def results_url(batch_id: int, **params: str) -> str:
    """The results changelist filtered to one batch."""
    query = "&".join(f"{k}={v}" for k, v in {RESULTS_BATCH_PARAM: batch_id, **params}.items())
    return f"{reverse('admin:batches_batchresult_changelist')}?{query}"


def pretty_pre(value) -> str:
    """Indented JSON (or the text as it is) in an escaped <pre>."""
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
                       pretty_text(value))


def pretty_text(value) -> str:
    """Indented JSON; JSON nested deeper than the json module can recurse is shown as the
    stored text, or as a note."""
    try:
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                return value
            return json.dumps(parsed, indent=2, ensure_ascii=False) if isinstance(
                parsed, (dict, list)) else value
        return json.dumps(value, indent=2, ensure_ascii=False)
    except RecursionError:
        return value if isinstance(value, str) else "(nested too deeply to show)"


class PlainActionCheckbox:
    """Each row's action checkbox written as markup (the same as Django's): Django renders it
    through the form widget templates, about a tenth of a 100-row changelist's CPU."""

    def action_checkbox(self, obj) -> str:
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html('<input type="checkbox" name="{}" value="{}" class="action-select" '
                           'aria-label="{}">', helpers.ACTION_CHECKBOX_NAME, obj.pk, label)


# --- Batches --------------------------------------------------------------------------------

# Finalising a batch copies its row counts onto it, so those counters are exact; a batch still
# running (or failed at batch level) is read from the status counters the database keeps
# (batches/status_counts.py), not counted over its rows.
COUNTED_STATUSES = (Batch.Status.COMPLETED, Batch.Status.COMPLETED_WITH_ERRORS,
                    Batch.Status.CANCELLED)


def _live_count(status: str) -> Coalesce:
    rows = (BatchStatusCount.objects.filter(batch=OuterRef("pk"), status=status)
            .order_by().values("batch").annotate(rows=Sum("n")).values("rows")[:1])
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def _count_annotation(status: str, stored: str) -> Case:
    return Case(When(status__in=COUNTED_STATUSES, then=F(stored)),
                default=_live_count(status), output_field=IntegerField())


class BatchAdminForm(forms.ModelForm):
    class Meta:
        model = Batch
        fields = ("name", "priority", "concurrency", "max_retries")

    def clean_concurrency(self) -> int:
        value = self.cleaned_data["concurrency"]
        if not 1 <= value <= services.MAX_CONCURRENCY:
            raise forms.ValidationError(
                f"Concurrency must be between 1 and {services.MAX_CONCURRENCY}.")
        return value

    def clean_max_retries(self) -> int:
        value = self.cleaned_data["max_retries"]
        if not 0 <= value <= services.MAX_RETRIES:
            raise forms.ValidationError(
                f"Max retries must be between 0 and {services.MAX_RETRIES}.")
        return value


def _batch_action(service: Callable[..., int], description: str, done: str):
    """An admin action calling `service(batch=...)` on each selected batch.

    `done` is the success message, formatted with {batches} and {rows}."""

    def action(modeladmin: BatchAdmin, request, queryset: QuerySet) -> None:
        changed_batches = changed_rows = 0
        for batch in queryset.order_by("pk"):
            try:
                changed_rows += service(batch=batch)
            except services.ServiceError as err:  # not allowed now, or the active-batch cap
                modeladmin.message_user(request, f"{batch.display_name} (#{batch.pk}): {err}",
                                        messages.WARNING)
            else:
                changed_batches += 1
        if changed_batches:
            modeladmin.message_user(
                request, done.format(batches=_plural(changed_batches, "batch", "batches"),
                                     rows=_plural(changed_rows, "row", "rows")),
                messages.SUCCESS)

    action.__name__ = service.__name__
    return admin.action(description=description, permissions=("change",))(action)


def _start_draft(*, batch: Batch) -> int:
    return iterations.batch_start(batch=batch).total_rows


def _plural(n: int, one: str, many: str) -> str:
    return f"{number_format(n, force_grouping=True)} {one if n == 1 else many}"


JOB_FIELDS = ("name", "state", "row_count", "byte_count", "input_file", "submitted_at",
              "last_polled_at", "finished_at", "succeeded_rows", "failed_rows",
              "returned_rows", "error")


class ProviderJobInline(admin.TabularInline):
    """A batch-mode batch's Gemini Batch Mode jobs (read only: the engine owns them)."""

    model = ProviderJob
    extra = 0
    can_delete = False
    fields = readonly_fields = JOB_FIELDS

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProviderJob)
class ProviderJobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "batch", "state", "row_count", "succeeded_rows",
                    "failed_rows", "returned_rows", "submitted_at", "last_polled_at",
                    "finished_at")
    list_filter = ("state",)
    list_select_related = ("batch",)
    search_fields = ("name", "batch__name")
    fields = readonly_fields = ("batch", *JOB_FIELDS)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    form = BatchAdminForm

    def get_inlines(self, request, obj=None):
        # Only a batch-mode batch has jobs; an online batch's form stays as it was.
        return [ProviderJobInline] if obj is not None and obj.is_batch_mode else []
    list_display = ("id", "display_name", "owner", "status", "progress", "counts", "priority",
                    "spent", "created_at", "deleted_on", "results_link")
    list_display_links = ("id", "display_name")
    list_filter = ("status", "priority", ("owner", admin.RelatedOnlyFieldListFilter),
                   "created_at")
    list_select_related = ("owner",)
    search_fields = ("name", "source_filename")
    search_help_text = "Name, file name, or a batch id."
    list_per_page = 50
    actions = [
        _batch_action(services.batch_cancel, "Cancel the selected batches",
                      "Cancelled {batches}: {rows} cancelled before they ran."),
        _batch_action(services.batch_pause, "Pause the selected batches",
                      "Paused {batches}: {rows} wait to run."),
        _batch_action(services.batch_resume, "Resume the selected batches",
                      "Resumed {batches}: {rows} back to pending."),
        _batch_action(services.batch_retry_failed, "Retry the failed rows of the selected batches",
                      "Retrying {batches}: {rows} back to pending."),
        _batch_action(_start_draft, "Start the selected drafts",
                      "Started {batches}: {rows} to run."),
    ]
    fieldsets = (
        (None, {"fields": ("name", "owner", "status", "results_link", "figures")}),
        ("How it runs", {"fields": ("mode", "fallback_online", "priority", "concurrency",
                                    "max_retries", "budget",
                                    "thinking", "model_name",
                                    "temperature", "max_output_tokens", "rpm_limit", "tpm_limit",
                                    "conversation_column", "language", "google_search",
                                    "url_context")}),
        ("Input", {"fields": ("source_filename", "columns", "prompt_pre",
                              "system_instruction", "response_schema_pre")}),
        ("Processing", {"fields": ("cancel_requested", "paused", "total_rows", "succeeded_count",
                                   "failed_count", "cancelled_count", "prompt_tokens",
                                   "output_tokens", "thoughts_tokens", "cached_tokens",
                                   "cost_spent", "costed_rows", "unpriced_rows", "created_at",
                                   "started_at", "finished_at", "deleted_on",
                                   "updated_at", "api_waiting_since", "slice_heartbeat_at",
                                   "last_error")}),
    )
    readonly_fields = (
        # The budget changes through batch_set_budget (page, API, CLI): it may resume the batch.
        "owner", "status", "results_link", "figures", "budget", "thinking", "model_name",
        "mode", "fallback_online",
        "temperature",
        "max_output_tokens", "rpm_limit", "tpm_limit", "conversation_column", "source_filename",
        "columns", "prompt_pre", "system_instruction", "response_schema_pre", "cancel_requested",
        "paused", "total_rows", "succeeded_count", "failed_count", "cancelled_count",
        "prompt_tokens", "output_tokens", "thoughts_tokens", "cached_tokens", "cost_spent",
        "costed_rows", "unpriced_rows", "created_at", "started_at", "finished_at", "deleted_on",
        "updated_at",
        "api_waiting_since", "slice_heartbeat_at", "last_error", "language", "google_search",
        "url_context",
    )

    def get_queryset(self, request) -> QuerySet:
        return super().get_queryset(request).annotate(
            live_succeeded=_count_annotation(BatchResult.Status.SUCCEEDED, "succeeded_count"),
            live_failed=_count_annotation(BatchResult.Status.FAILED, "failed_count"),
            live_cancelled=_count_annotation(BatchResult.Status.CANCELLED, "cancelled_count"),
        )

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            found |= queryset.filter(pk=int(term))
        return found, may_have_duplicates

    def has_add_permission(self, request) -> bool:
        # A batch comes from a file with its rows: the upload page, the API or batch_run.
        return False

    def save_model(self, request, obj: Batch, form, change: bool) -> None:
        data = form.cleaned_data
        services.batch_update(batch=obj, name=data["name"], priority=data["priority"],
                              concurrency=data["concurrency"], max_retries=data["max_retries"],
                              by=request.user)

    def delete_model(self, request, obj: Batch) -> None:
        services.batch_delete(batch=obj)

    def delete_queryset(self, request, queryset: QuerySet) -> None:
        for batch in queryset:
            services.batch_delete(batch=batch)

    def get_deleted_objects(self, objs, request):
        # The default collects and lists every row of every batch: far too many to show.
        batches = list(objs)
        summary = [format_html("{} (#{}) and its {} rows", b.display_name, b.pk,
                               number_format(b.total_rows, force_grouping=True))
                   for b in batches]
        counts = {"batches": len(batches), "results": sum(b.total_rows for b in batches)}
        perms_needed = set()
        if not request.user.has_perm("batches.delete_batch"):
            perms_needed.add("batch")
        return summary, counts, perms_needed, []

    @admin.display(description="name")
    def display_name(self, obj: Batch) -> str:
        return obj.display_name

    @admin.display(description="progress")
    def progress(self, obj: Batch):
        tally = RowTally({"succeeded": obj.live_succeeded, "failed": obj.live_failed,
                          "cancelled": obj.live_cancelled,
                          "pending": max(0, obj.total_rows - obj.live_succeeded - obj.live_failed
                                         - obj.live_cancelled)})
        return format_html('<progress value="{}" max="100" style="width: 6em"></progress> {}% '
                           '<span class="help">{}</span>', tally.percent, tally.percent,
                           tally.summary)

    @admin.display(description="succeeded / failed / total")
    def counts(self, obj: Batch) -> str:
        return " / ".join(number_format(n, force_grouping=True)
                          for n in (obj.live_succeeded, obj.live_failed, obj.total_rows))

    @admin.display(description="deleted on")
    def deleted_on(self, obj: Batch) -> str:
        """When retention deletes the batch (BATCH_RETENTION_DAYS); "kept" otherwise."""
        when = retention.deletes_at(obj)
        return f"{timezone.localtime(when):%Y-%m-%d %H:%M %Z}" if when else "kept"

    @admin.display(description="rows")
    def results_link(self, obj: Batch):
        if obj.pk is None:
            return "-"
        return format_html('<a href="{}">{} rows</a>', results_url(obj.pk),
                           number_format(obj.total_rows, force_grouping=True))

    @admin.display(description="live figures")
    @admin.display(description="spent", ordering="cost_spent")
    def spent(self, obj: Batch) -> str:
        text = costs.format_money(
            None if obj.unpriced_rows and not obj.costed_rows else obj.cost_spent)
        return f"{text} of {costs.format_money(obj.budget)}" if obj.budget is not None else text

    def figures(self, obj: Batch):
        p = obj.progress()
        eta = "-" if p.eta_seconds is None else f"{p.eta_seconds} s"
        c = p.counts
        return format_html(
            "{}% ({}): {} succeeded, {} failed, {} cancelled, {} pending, {} running "
            "of {} &middot; {} rows/min &middot; ETA {} &middot; {} tokens",
            p.percent, p.summary, c["succeeded"], c["failed"], c["cancelled"], c["pending"],
            c["running"],
            p.total, p.rows_per_minute, eta, number_format(p.tokens, force_grouping=True))

    @admin.display(description="prompt template")
    def prompt_pre(self, obj: Batch):
        return pretty_pre(obj.prompt_template)

    @admin.display(description="response schema")
    def response_schema_pre(self, obj: Batch):
        return "-" if obj.response_schema is None else pretty_pre(obj.response_schema)


# --- Results --------------------------------------------------------------------------------

class EstimatedCountPaginator(Paginator):
    """Counts exactly up to `exact_limit`, then estimates (PostgreSQL's planner) instead of
    counting a million rows on every page load. `known_count`, when given, is used as is."""

    exact_limit = 10_000

    def __init__(self, *args, known_count: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.known_count = known_count

    @cached_property
    def count(self) -> int:
        if self.known_count is not None:
            return self.known_count
        queryset = self.object_list.order_by()
        capped = queryset.values("pk")[: self.exact_limit + 1].count()
        if capped <= self.exact_limit:
            return capped
        estimate = planner_estimate(queryset)
        return max(capped, estimate) if estimate is not None else queryset.count()


def planner_estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's estimate of the rows a query returns; None on other databases."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class BatchFilter(admin.SimpleListFilter):
    """The newest batches, plus the one selected; never a list of every batch."""

    title = "batch"
    parameter_name = RESULTS_BATCH_PARAM
    shown = 20

    def lookups(self, request, model_admin):
        batches = list(Batch.objects.order_by("-pk").only("pk", "name", "source_filename")
                       [: self.shown])
        selected = self.value()
        if selected and selected.isdigit() and all(str(b.pk) != selected for b in batches):
            batches += list(Batch.objects.filter(pk=int(selected))
                            .only("pk", "name", "source_filename"))
        return [(str(b.pk), f"#{b.pk} {b.display_name}") for b in batches]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(batch_id=int(value))


def known_result_count(params: dict[str, str]) -> int | None:
    """Rows matching the changelist's filters, from the batch's stored counters, when they
    say exactly: the batch filter alone, or with a status filter on a finished batch."""
    filters = {k: v for k, v in params.items() if k not in ("p", "o", "all")}
    batch_id = filters.pop(RESULTS_BATCH_PARAM, "")
    status = filters.pop("status__exact", None)
    if filters or not batch_id.isdigit():
        return None
    batch = Batch.objects.filter(pk=int(batch_id)).first()
    if batch is None:
        return 0
    if status is None:
        return batch.total_rows
    if batch.status not in COUNTED_STATUSES:
        return None
    return {
        BatchResult.Status.SUCCEEDED: batch.succeeded_count,
        BatchResult.Status.FAILED: batch.failed_count,
        BatchResult.Status.CANCELLED: batch.cancelled_count,
    }.get(status, 0)


@admin.register(BatchResult)
class BatchResultAdmin(PlainActionCheckbox, admin.ModelAdmin):
    list_display = ("id", "batch", "index", "status", "attempts", "output_preview",
                    "error_preview", "cost", "finished_at")
    list_display_links = ("id", "index")
    list_filter = ("status", BatchFilter)
    list_select_related = ("batch",)
    search_fields = ("output", "error")
    search_help_text = "Text in the output or the error."
    # Both orders are served by the (batch, index) and (batch, status, index) indexes.
    ordering = ("batch_id", "index")
    sortable_by = ()
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100
    actions = ["retry_rows", "rerun_rows"]
    fieldsets = (
        (None, {"fields": ("batch", "index", "status", "attempts", "conversation_key",
                           "cached")}),
        ("Input", {"fields": ("input_pre", "prompt_pre")}),
        ("Answer", {"fields": ("output_pre", "data", "error", "finish_reason", "model_version",
                               "prompt_tokens", "output_tokens", "thoughts_tokens",
                               "cached_tokens", "cost", "latency_ms", "sources")}),
        ("Processing", {"fields": ("started_at", "finished_at", "not_before", "lease_expires_at",
                                   "claim_token")}),
    )
    readonly_fields = (
        "batch", "index", "status", "attempts", "conversation_key", "cached", "input_pre",
        "prompt_pre", "output_pre", "data", "error", "finish_reason", "model_version",
        "prompt_tokens", "output_tokens", "thoughts_tokens", "cached_tokens", "cost",
        "latency_ms", "started_at", "finished_at", "not_before",
        "lease_expires_at", "claim_token", "sources",
    )

    def get_queryset(self, request) -> QuerySet:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match and match.url_name == "batches_batchresult_changelist":
            # The list shows previews only; long inputs and answers stay in the database.
            queryset = queryset.defer("input", "prompt", "output", "error", "data").annotate(
                output_start=Left("output", PREVIEW_CHARS + 1),
                error_start=Left("error", PREVIEW_CHARS + 1),
            )
        return queryset

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        known = None
        if not request.GET.get("q"):
            known = known_result_count(request.GET.dict())
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page,
                              known_count=known)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Rows belong to their batch: deleting one would leave the batch's counts wrong.
        return False

    @admin.action(description="Retry the selected rows (failed or cancelled only)",
                  permissions=("change",))
    def retry_rows(self, request, queryset: QuerySet) -> None:
        selected = BatchResult.objects.filter(pk__in=queryset.values("pk"))
        total = selected.count()
        try:
            retried = services.results_retry(results=selected)
        except services.ServiceError as err:  # e.g. an owner's active-batch cap
            self.message_user(request, str(err), messages.WARNING)
            return
        text = f"Retrying {_plural(retried, 'row', 'rows')}."
        if skipped := total - retried:
            text += (f" Skipped {_plural(skipped, 'row', 'rows')} that "
                     f"{'was' if skipped == 1 else 'were'} not failed or cancelled.")
        self.message_user(request, text, messages.SUCCESS if retried else messages.WARNING)

    @admin.action(description="Run the selected rows again, succeeded ones too (not from the "
                              "cache)", permissions=("change",))
    def rerun_rows(self, request, queryset: QuerySet) -> None:
        selected = BatchResult.objects.filter(pk__in=queryset.values("pk"))
        total = selected.count()
        rerun = iterations.results_rerun(results=selected)
        text = f"Running {_plural(rerun, 'row', 'rows')} again."
        if skipped := total - rerun:
            text += (f" Skipped {_plural(skipped, 'row', 'rows')} still running or in a "
                     "draft.")
        self.message_user(request, text, messages.SUCCESS if rerun else messages.WARNING)

    @admin.display(description="output")
    def output_preview(self, obj: BatchResult) -> str:
        return _preview(obj.output_start if hasattr(obj, "output_start") else obj.output)

    @admin.display(description="error")
    def error_preview(self, obj: BatchResult) -> str:
        return _preview(obj.error_start if hasattr(obj, "error_start") else obj.error)

    @admin.display(description="input")
    def input_pre(self, obj: BatchResult):
        return pretty_pre(obj.input)

    @admin.display(description="prompt")
    def prompt_pre(self, obj: BatchResult):
        return pretty_pre(obj.prompt)

    @admin.display(description="output")
    def output_pre(self, obj: BatchResult):
        return pretty_pre(obj.output) if obj.output else "-"


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


# --- Cost -----------------------------------------------------------------------------------

@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ("model", "valid_from", "currency", "input_per_million", "output_per_million",
                    "cached_input_per_million", "batch_discount_percent",
                    "long_context_threshold")
    list_filter = ("model", "currency")
    search_fields = ("model",)
    fieldsets = (
        (None, {"fields": ("model", "valid_from", "currency", "source")}),
        ("Per million tokens", {"fields": ("input_per_million", "output_per_million",
                                           "thinking_per_million", "cached_input_per_million",
                                           "batch_discount_percent")}),
        ("Long context", {"fields": ("long_context_threshold", "long_input_per_million",
                                     "long_output_per_million",
                                     "long_cached_input_per_million")}),
    )

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        costs.clear_price_cache()  # this process; workers look again within 30 s


@admin.register(UserBudget)
class UserBudgetAdmin(admin.ModelAdmin):
    list_display = ("user", "monthly_limit", "month_to_date")
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ()
    raw_id_fields = ("user",)

    @admin.display(description="spent this month")
    def month_to_date(self, obj: UserBudget) -> str:
        return costs.format_money(costs.month_spent(obj.user_id))


@admin.register(MonthlySpend)
class MonthlySpendAdmin(admin.ModelAdmin):
    list_display = ("user", "month", "spent")
    list_filter = ("month",)
    search_fields = ("user__username",)
    readonly_fields = ("user", "month", "spent")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(CachedAnswer)
class CachedAnswerAdmin(admin.ModelAdmin):
    """The result cache: look, or delete entries to make their requests reach the model again."""

    list_display = ("id", "owner", "model_name", "key", "created_at")
    list_filter = ("model_name", ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner",)
    search_fields = ("key",)
    readonly_fields = ("owner", "key", "model_name", "output", "finish_reason", "model_version",
                       "prompt_tokens", "output_tokens", "sources", "created_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UserSettings)
class UserSettingsAdmin(admin.ModelAdmin):
    """Users' defaults for new batches, to look at: users change them on their Settings page
    or through /api/me/settings/, which check them."""

    list_display = ("user", "model", "language", "concurrency", "thinking", "apply_overrides",
                    "updated_at")
    search_fields = ("user__username",)
    readonly_fields = ("user", "model", "system_instruction", "language", "concurrency",
                       "thinking", "apply_overrides", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
