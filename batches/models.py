"""Batches and their rows. Row state changes live here as QuerySet methods so that every entry
point (engine, services, admin) moves rows the same way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from batches import status_counts as counters


def default_model_name() -> str:
    return settings.GEMINI_DEFAULT_MODEL


class Priority(models.IntegerChoices):
    # Lower sorts first: claims take high before normal before low.
    HIGH = 0, "high"
    NORMAL = 1, "normal"
    LOW = 2, "low"


class Mode(models.TextChoices):
    ONLINE = "online", "online"
    # Gemini Batch Mode (batches.batchmode): half price, results usually within hours.
    BATCH = "batch", "batch"


class BatchQuerySet(models.QuerySet):
    def visible_to(self, user) -> BatchQuerySet:
        """Batches a user may see: their own; staff see all."""
        if user.is_staff:
            return self
        return self.filter(owner=user)

    def active(self) -> BatchQuerySet:
        return self.filter(status__in=Batch.ACTIVE_STATUSES)


class Batch(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"  # rows stored, nothing runs except a sample (see batches.iterations)
        PENDING = "pending"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        COMPLETED_WITH_ERRORS = "completed_with_errors"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING, Status.PAUSED)
    FINAL_STATUSES = (
        Status.COMPLETED,
        Status.COMPLETED_WITH_ERRORS,
        Status.FAILED,
        Status.CANCELLED,
    )

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="batches")
    name = models.CharField(max_length=200, blank=True)
    source_filename = models.CharField(max_length=255, blank=True)
    columns = models.JSONField(default=list)
    prompt_template = models.TextField()
    model_name = models.CharField(max_length=100, default=default_model_name)
    system_instruction = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    response_schema = models.JSONField(null=True, blank=True)
    concurrency = models.PositiveIntegerField(default=16)
    max_retries = models.PositiveIntegerField(default=3)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    conversation_column = models.CharField(max_length=200, blank=True)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    # Reuse identical earlier answers (batches.resultcache); off means "always call the model".
    use_cache = models.BooleanField(default=True, db_default=True)
    # The batch this one is a new version of (batches.iterations).
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="versions")
    # A draft whose sample rows may be claimed by the engine.
    sampling = models.BooleanField(default=False, db_default=False)

    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PENDING)
    cancel_requested = models.BooleanField(default=False)
    paused = models.BooleanField(default=False)

    # Written when the batch finishes (and by refresh_counts); live figures come from progress().
    total_rows = models.PositiveIntegerField(default=0)
    succeeded_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    cancelled_count = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    # Rows answered from the result cache, and the tokens they would have cost; kept live by the
    # engine's writes like the token totals.
    cached_count = models.PositiveIntegerField(default=0, db_default=0)
    saved_prompt_tokens = models.BigIntegerField(default=0, db_default=0)
    saved_output_tokens = models.BigIntegerField(default=0, db_default=0)

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_error = models.TextField(blank=True)
    # Set while the model API is unreachable and the batch waits for it (circuit breaker open).
    api_waiting_since = models.DateTimeField(null=True, blank=True)
    # Renewed by every slice working on the batch; rescue re-enqueues batches whose beat stopped.
    slice_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Cost (batches/costs): the thinking option ("off", "low", "default" or a token budget), an
    # optional budget, and running totals the engine adds to in its bulk writes.
    thinking = models.CharField(max_length=12, default="off")
    budget = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cost_spent = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    costed_rows = models.PositiveIntegerField(default=0)  # answers in cost_spent
    unpriced_rows = models.PositiveIntegerField(default=0)  # answers with no price known
    thoughts_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    prompt_chars = models.BigIntegerField(default=0)  # every rendered prompt, known at ingest
    # Receives this batch's events, signed with the owner's default secret (notifications).
    webhook_url = models.URLField(max_length=2000, blank=True)
    # Batch mode (batches.batchmode): rows go to the provider in jobs; rows of a stalled job run
    # online at the online price when fallback_online allows it.
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.ONLINE,
                            db_default=Mode.ONLINE)
    fallback_online = models.BooleanField(default=True, db_default=True)
    # Grounding (docs/grounding.md): Gemini's google_search and url_context tools, and the
    # language answers are asked in ("" = the prompt's own; batches.languages).
    google_search = models.BooleanField(default=False, db_default=False)
    url_context = models.BooleanField(default=False, db_default=False)
    language = models.CharField(max_length=16, blank=True, default="", db_default="")

    objects = BatchQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        # Staff may use high priority without it (services.may_use_high_priority).
        permissions = [("use_high_priority", "Can give a batch high priority")]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="batch_owner_created"),
            # Claims scan active batches by priority then age.
            models.Index(fields=["status", "priority", "created_at"], name="batch_claim_order"),
        ]

    def __str__(self) -> str:
        return self.name or f"Batch {self.pk}"

    @property
    def display_name(self) -> str:
        return self.name or self.source_filename or f"Batch {self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def is_draft(self) -> bool:
        return self.status == self.Status.DRAFT

    @property
    def is_batch_mode(self) -> bool:
        return self.mode == Mode.BATCH

    @property
    def mode_text(self) -> str:
        """"online", or where its Batch Mode jobs are: "submitted to Gemini batch mode, 1 job,
        PENDING" (every page, the API's client and the CLI say it alike)."""
        if not self.is_batch_mode:
            return "online"
        jobs = list(self.provider_jobs.values_list("state", "finished_at"))
        open_states = [state.removeprefix("JOB_STATE_") for state, done in jobs if done is None]
        if open_states:
            n = len(open_states)
            states = ", ".join(f"{count} {state}" if n > 1 else state
                               for state, count in sorted(Counter(open_states).items()))
            return f"submitted to Gemini batch mode, {n} job{'s' if n > 1 else ''}, {states}"
        if not jobs:
            return "Gemini batch mode (half price), waiting to submit"
        return f"Gemini batch mode (half price), {len(jobs)} job{'s' if len(jobs) > 1 else ''}"

    @property
    def priority_name(self) -> str:
        return Priority(self.priority).label

    @property
    def tools(self) -> tuple[str, ...]:
        """The model tools the batch's requests ask for (providers.capabilities.TOOLS)."""
        return tuple(name for name, on in (("google_search", self.google_search),
                                           ("url_context", self.url_context)) if on)

    @property
    def language_name(self) -> str:
        from batches import languages

        return languages.name_of(self.language)

    @property
    def output_fields(self) -> list:
        """The output columns (outputs.OutputField) its schema defines; [] for a text batch."""
        from batches import outputs

        return outputs.fields_from_schema(self.response_schema)

    def status_counts(self) -> dict[str, int]:
        """Rows per status, from the counters the database keeps (batches/status_counts.py)."""
        return status_counts_for([self.pk])[self.pk]

    def live_status_counts(self) -> dict[str, int]:
        """Rows per status, counted over the rows (an index-only scan on (batch, status, index)):
        what a batch's final status and stored counts are decided on."""
        counts = {s: 0 for s in BatchResult.Status.values}
        rows = (
            BatchResult.objects.filter(batch=self)
            .order_by()
            .values_list("status")
            .annotate(n=Count("id"))
        )
        for status, n in rows:
            counts[status] = n
        return counts

    def progress(self) -> Progress:
        return Progress.for_batch(self)

    def refresh_counts(self) -> None:
        """Copy the live row counts and token totals onto the batch (cached rows cost nothing)."""
        counts = self.live_status_counts()
        tokens = BatchResult.objects.filter(batch=self, cached=False).aggregate(
            p=Sum("prompt_tokens"), o=Sum("output_tokens")
        )
        saved = BatchResult.objects.filter(batch=self, cached=True).aggregate(
            n=Count("id"), p=Sum("prompt_tokens"), o=Sum("output_tokens")
        )
        Batch.objects.filter(pk=self.pk).update(
            total_rows=sum(counts.values()),
            succeeded_count=counts["succeeded"],
            failed_count=counts["failed"],
            cancelled_count=counts["cancelled"],
            prompt_tokens=tokens["p"] or 0,
            output_tokens=tokens["o"] or 0,
            cached_count=saved["n"],
            saved_prompt_tokens=saved["p"] or 0,
            saved_output_tokens=saved["o"] or 0,
        )
        self.refresh_from_db()

    def finalise_if_done(self) -> bool:
        """Write the final status once no row is pending or running; True if this call did."""
        open_rows = BatchResult.objects.filter(
            batch=self, status__in=[BatchResult.Status.PENDING, BatchResult.Status.RUNNING]
        )
        with transaction.atomic():
            if open_rows.exists():
                return False
            self.refresh_from_db(fields=["cancel_requested", "status"])
            if self.is_finished or self.is_draft:
                return False
            counts = self.live_status_counts()
            # Rows left cancelled keep the batch cancelled, also after some other rows were
            # retried: "completed with errors" with 0 failed would hide them.
            if self.cancel_requested or counts["cancelled"]:
                final = Batch.Status.CANCELLED
            elif counts["failed"]:
                final = Batch.Status.COMPLETED_WITH_ERRORS
            else:
                final = Batch.Status.COMPLETED
            # The status guard makes this write happen exactly once even if two workers race here.
            won = Batch.objects.filter(pk=self.pk).exclude(
                status__in=(*Batch.FINAL_STATUSES, Batch.Status.DRAFT)
            ).update(status=final, finished_at=timezone.now(), paused=False,
                     api_waiting_since=None)
            if won:
                Event.objects.record(self, FINAL_EVENTS[final])
                # In the same commit as the final status: a reader never sees a finished batch
                # with its stored counts not yet written (0 succeeded).
                self.refresh_counts()
        if won:
            counters.compact(self.pk)  # its counters move no more: one row per status
        return bool(won)


SEARCH_MAX_CHARS = 200
# The text a row is searched by on PostgreSQL: its input values (not the column names) and its
# answer, 'simple' configuration (no language's stemming). Not indexed: a GIN index on it made
# ingest 2.5 times slower (docs/search.md); an index must cover this very expression.
SEARCH_DOCUMENT_SQL = ("(jsonb_to_tsvector('simple'::regconfig, {input}, "
                       "'[\"string\", \"numeric\"]'::jsonb) "
                       "|| to_tsvector('simple'::regconfig, {output}))")


class _SearchDocument(models.Func):
    def __init__(self):
        from django.contrib.postgres.search import SearchVectorField

        super().__init__(models.F("input"), models.F("output"), output_field=SearchVectorField())

    def as_sql(self, compiler, connection, **extra):
        (input_sql, input_params), (output_sql, output_params) = (
            compiler.compile(e) for e in self.get_source_expressions())
        return (SEARCH_DOCUMENT_SQL.format(input=input_sql, output=output_sql),
                [*input_params, *output_params])


class BatchResultQuerySet(models.QuerySet):
    def search(self, text: str) -> BatchResultQuerySet:
        """Rows whose input values or answer match `text`. PostgreSQL: full text (websearch
        syntax: words, "phrases", or, -word); elsewhere a case-insensitive substring of the
        rendered prompt (which holds the input values) or the answer. No index serves it:
        callers scope it to one batch, whose rows it reads (docs/search.md)."""
        text = text.strip()
        if not text:
            return self
        if connections[self.db].vendor != "postgresql":
            return self.filter(Q(prompt__icontains=text) | Q(output__icontains=text))
        from django.contrib.postgres.search import SearchQuery

        return self.alias(found=_SearchDocument()).filter(
            found=SearchQuery(text, config="simple", search_type="websearch"))

    def retry(self) -> int:
        """Send failed or cancelled rows back to pending with a fresh retry budget."""
        return self.filter(
            status__in=[BatchResult.Status.FAILED, BatchResult.Status.CANCELLED]
        ).update(
            status=BatchResult.Status.PENDING,
            attempts=0,
            error="",
            not_before=None,
            lease_expires_at=None,
            claim_token=None,
            finished_at=None,
            online=False,  # a batch-mode row goes in a job again
            repair=None,
        )

    def reset(self, *, bypass_cache: bool = False) -> int:
        """Any rows back to pending as if never run (a draft's edit or start, a chosen re-run)."""
        return self.update(
            status=BatchResult.Status.PENDING, output="", error="", finish_reason="",
            model_version="", attempts=0, not_before=None, lease_expires_at=None,
            claim_token=None, prompt_tokens=None, output_tokens=None, latency_ms=None,
            started_at=None, finished_at=None, data=None, cached=False,
            bypass_cache=bypass_cache, online=False, repair=None, sources=None,
        )

    def cancel_pending(self) -> int:
        return self.filter(status=BatchResult.Status.PENDING).update(
            status=BatchResult.Status.CANCELLED,
            error="Cancelled before it ran.",
            finished_at=timezone.now(),
        )

    def release_expired_leases(self, now=None) -> int:
        """Running rows whose worker stopped renewing its lease go back to pending."""
        now = now or timezone.now()
        return self.filter(
            status=BatchResult.Status.RUNNING, lease_expires_at__lt=now
        ).update(
            status=BatchResult.Status.PENDING,
            lease_expires_at=None,
            claim_token=None,
        )


class BatchResult(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="results")
    index = models.PositiveIntegerField()
    # The row's line in the uploaded file (or its spreadsheet row), as error messages name it;
    # null for rows sent as JSON, whose number is index + 1.
    source_line = models.PositiveIntegerField(null=True, blank=True)
    input = models.JSONField(default=dict)
    prompt = models.TextField()
    conversation_key = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=40, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    not_before = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    thoughts_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Null while not answered, or when the model had no price at the time.
    cost = models.DecimalField(max_digits=16, decimal_places=9, null=True, blank=True)
    # Ids of the BatchDocuments attached to this row's request, in order (after the prompt).
    # Nullable so that rows inserted by raw SQL (the benchmark's loader) need not name it.
    document_ids = models.JSONField(default=list, blank=True, null=True)
    # The answer parsed and validated against the batch's response_schema (columns batches).
    data = models.JSONField(null=True, blank=True)
    # The answer was reused from the result cache: no request, no cost, no rate-limit token.
    cached = models.BooleanField(default=False, db_default=False)
    # Part of a draft's sample run; the engine claims only these rows of a draft.
    sample = models.BooleanField(default=False, db_default=False)
    # Re-run on request: the next answer comes from the model even if the cache has one.
    bypass_cache = models.BooleanField(default=False, db_default=False)
    # A batch-mode row the online engine may take (its job stalled, and the batch allows it).
    online = models.BooleanField(default=False, db_default=False)
    # A batch-mode answer that did not match the schema: {"answer": ..., "note": ...}, sent as a
    # repair turn in the row's next job.
    repair = models.JSONField(null=True, blank=True)
    # A grounded answer's web sources, [{"uri", "title"}] in the model's order; null: none.
    sources = models.JSONField(null=True, blank=True)

    objects = BatchResultQuerySet.as_manager()

    class Meta:
        ordering = ["batch", "index"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="result_unique_batch_index"),
        ]
        indexes = [
            # Claiming the next pending rows of a batch, counting per status, listing by status.
            models.Index(fields=["batch", "status", "index"], name="result_batch_status_index"),
            # Rescue finds expired leases without scanning finished rows.
            models.Index(fields=["lease_expires_at"], name="result_running_lease",
                         condition=Q(status="running")),
            # Rows per minute over the last minute.
            models.Index(fields=["batch", "finished_at"], name="result_batch_finished"),
            # A conversation's earlier turns, for claiming its next turn in order.
            models.Index(fields=["batch", "conversation_key", "index"],
                         name="result_conversation", condition=~Q(conversation_key="")),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}#{self.index}"

    @property
    def row_number(self) -> int:
        """The number the user knows the row by: its line in the file, or its 1-based position."""
        return self.source_line or self.index + 1


def status_counts_for(batch_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Rows per status of each batch, all five statuses, from the counters the database keeps:
    a few rows per batch to sum, however many rows it has."""
    counts = {pk: dict.fromkeys(BatchResult.Status.values, 0) for pk in batch_ids}
    for batch_id, status, n in counters.sums(counts):
        counts[batch_id][status] = n
    return counts


def stored_counts(batch: Batch) -> dict[str, int] | None:
    """The counts written on a finished batch, when they add up; None when they must be counted."""
    done = batch.succeeded_count + batch.failed_count + batch.cancelled_count
    if not batch.is_finished or done != batch.total_rows:
        return None
    return {"pending": 0, "running": 0, "succeeded": batch.succeeded_count,
            "failed": batch.failed_count, "cancelled": batch.cancelled_count}


def row_counts(batches: Iterable[Batch]) -> dict[int, dict[str, int]]:
    """Rows per status for each batch, what every page and the API show: stored for finished
    batches, from the counters the database keeps for the others (one query)."""
    result = {}
    rest = []
    for batch in batches:
        if (counts := stored_counts(batch)) is not None:
            result[batch.pk] = counts
        else:
            rest.append(batch.pk)
    result.update(status_counts_for(rest))
    return result


class ProviderJob(models.Model):
    """One Gemini Batch Mode job holding some of a batch's rows (batches.batchmode).

    Its rows are claimed with `claim_token` and a long lease; only rows still holding that token
    are written from its results, so writing them twice changes nothing."""

    OPEN_STATES = ("SUBMITTING", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="provider_jobs")
    name = models.CharField(max_length=200, blank=True)  # "batches/..." at the provider
    state = models.CharField(max_length=40, default="SUBMITTING")
    claim_token = models.UUIDField(unique=True)
    row_count = models.PositiveIntegerField(default=0)
    byte_count = models.PositiveBigIntegerField(default=0)
    input_file = models.CharField(max_length=200, blank=True)  # "files/..." when not inline
    submitted_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    # Results written and rows settled: the job needs nothing more.
    finished_at = models.DateTimeField(null=True, blank=True)
    # One poller at a time fetches a job's results (the writes are idempotent anyway).
    poll_lease_until = models.DateTimeField(null=True, blank=True)
    succeeded_rows = models.PositiveIntegerField(default=0)
    failed_rows = models.PositiveIntegerField(default=0)
    returned_rows = models.PositiveIntegerField(default=0)  # back to pending or online
    # The budget reservation made at submit: per row, and the ledgers it is held in.
    reserved_per_row = models.BigIntegerField(default=0)
    budget_keys = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["batch", "id"]
        indexes = [models.Index(fields=["finished_at", "state"], name="provider_job_open")]

    def __str__(self) -> str:
        return self.name or f"job {self.pk} (submitting)"

    @property
    def state_label(self) -> str:
        return self.state.removeprefix("JOB_STATE_")

    @property
    def is_open(self) -> bool:
        return self.finished_at is None


class StagedUpload(models.Model):
    """A file uploaded on the new-batch page and kept in Django's storage between the preview and
    Create, so neither a re-rendered preview nor a refused submit makes the user choose it again.
    Only its owner can use it, and it expires (BATCH_STAGED_UPLOAD_HOURS)."""

    token = models.UUIDField(unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="staged_uploads")
    filename = models.CharField(max_length=255)
    storage_name = models.CharField(max_length=500)  # the file's name in default_storage
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.filename


class CachedAnswer(models.Model):
    """A succeeded answer, kept for reuse by any later identical request of the same owner.

    The answer itself is stored here, not a pointer to the row, so deleting the batch that paid
    for it does not break batches that reused it (batches.resultcache)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="cached_answers")
    key = models.CharField(max_length=64)  # sha256 hex of the request (resultcache.cache_key)
    model_name = models.CharField(max_length=100)
    output = models.TextField()
    finish_reason = models.CharField(max_length=40, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    sources = models.JSONField(null=True, blank=True)  # a grounded answer's web sources
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="cached_answer_owner_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="cached_answer_created")]

    def __str__(self) -> str:
        return f"{self.owner_id}:{self.key[:12]}"


class BatchDocument(models.Model):
    """One uploaded file's content, kept in Django's storage (never in the database). Rows that
    use it list its id; two rows with the same bytes share one BatchDocument."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=255)  # the first file name it arrived under
    path = models.CharField(max_length=500)  # its name in default_storage
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    mime_type = models.CharField(max_length=100)
    pages = models.PositiveIntegerField(null=True, blank=True)
    # The Files API copy, reused for retries until shortly before it expires.
    gemini_file_uri = models.CharField(max_length=500, blank=True)
    gemini_file_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["batch", "id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "sha256"], name="document_unique_batch_sha"),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.name}"


class RateBucket(models.Model):
    """Shared state for one rate-limit or circuit-breaker key (e.g. a model's requests per minute),
    used by every worker process through the database when Redis is not configured."""

    key = models.CharField(max_length=200, unique=True)
    tokens = models.FloatField(default=0)
    updated_at = models.FloatField(default=0)  # unix time of the last refill
    blocked_until = models.FloatField(default=0)  # unix time; nothing is spent before it
    failures = models.PositiveIntegerField(default=0)  # consecutive transient failures
    opened_at = models.FloatField(null=True, blank=True)  # when the circuit opened, unix time

    def __str__(self) -> str:
        return self.key


class ModelPrice(models.Model):
    """A model's published price per million tokens from `valid_from` on (batches/costs)."""

    model = models.CharField(max_length=100)
    valid_from = models.DateTimeField(default=timezone.now)
    currency = models.CharField(max_length=3, default="USD")
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    # Blank: thinking tokens are billed as output (the Gemini 2.5 models).
    thinking_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True,
                                               blank=True)
    cached_input_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True,
                                                   blank=True)
    batch_discount_percent = models.DecimalField(max_digits=5, decimal_places=2, default=50)
    # Prompts longer than this many tokens are billed at the long-context prices.
    long_context_threshold = models.PositiveIntegerField(null=True, blank=True)
    long_input_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True,
                                                 blank=True)
    long_output_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True,
                                                  blank=True)
    long_cached_input_per_million = models.DecimalField(max_digits=12, decimal_places=6,
                                                        null=True, blank=True)
    source = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [models.UniqueConstraint(fields=["model", "valid_from"],
                                               name="price_unique_model_from")]

    def __str__(self) -> str:
        return f"{self.model} from {self.valid_from:%Y-%m-%d}"


class UserBudget(models.Model):
    """An operator's monthly spending limit for one user (else USER_MONTHLY_BUDGET)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="budget")
    monthly_limit = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                                        help_text="Blank: no limit for this user.")

    def __str__(self) -> str:
        return f"{self.user}: {self.monthly_limit}"


class MonthlySpend(models.Model):
    """A user's spend in one calendar month, added to by the engine's bulk writes."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="monthly_spend")
    month = models.DateField()  # the first day of the month
    spent = models.DecimalField(max_digits=18, decimal_places=9, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "month"],
                                               name="spend_unique_user_month")]

    def __str__(self) -> str:
        return f"{self.user} {self.month:%Y-%m}: {self.spent}"


class BudgetLedger(models.Model):
    """Shared budget state for one key (a batch or a user's month) when Redis is not set:
    spent so far and the reservations of rows in flight (batches/costs/store.py)."""

    key = models.CharField(max_length=200, unique=True)
    spent_nanos = models.BigIntegerField(default=0)
    holds = models.JSONField(default=dict)  # claim token -> [nanos, unix expiry]

    def __str__(self) -> str:
        return self.key


class UserSettings(models.Model):
    """A user's own defaults for new batches (the settings page, /api/me/settings/). Blank
    fields fall back to the server's defaults; batches record what they actually used."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="batch_settings")
    model = models.CharField(max_length=100, blank=True)
    system_instruction = models.TextField(blank=True)
    language = models.CharField(max_length=16, blank=True)
    concurrency = models.PositiveIntegerField(null=True, blank=True)
    thinking = models.CharField(max_length=12, blank=True)
    # The design's applyOverrides: the system instruction above goes before every batch's own.
    apply_overrides = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "user settings"

    def __str__(self) -> str:
        return f"Settings of {self.user}"


class RowTally:
    """What the rows of a batch add up to, from its per-status counts. Every surface (pages, API,
    CLI, admin) reads its figures here, so they cannot disagree.

    `processed` rows ran to an answer or an error; cancelled rows did not run, so they count
    neither towards `percent` nor towards the rate."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        self.total = sum(counts.values())
        self.succeeded = counts.get("succeeded", 0)
        self.failed = counts.get("failed", 0)
        self.cancelled = counts.get("cancelled", 0)
        self.processed = self.succeeded + self.failed
        self.remaining = counts.get("pending", 0) + counts.get("running", 0)
        self.percent = round(100 * self.processed / self.total, 1) if self.total else 100.0

    @property
    def summary(self) -> str:
        """"55 of 300 processed · 245 cancelled"."""
        text = f"{self.processed:,} of {self.total:,} processed"
        if self.cancelled:
            text += f" · {self.cancelled:,} cancelled"
        return text

    def share(self, n: int) -> float:
        """n as a percent of all rows, for progress bar segments."""
        return round(100 * n / self.total, 1) if self.total else 0.0


class Progress(RowTally):
    """Live figures for a batch: the tally, plus rate, ETA and tokens."""

    RATE_WINDOW = timedelta(seconds=60)
    # At most this many of the rows finished in the window are read: at hundreds of rows a
    # second, counting a whole minute's rows took the progress poll 90-130 ms on PostgreSQL.
    RATE_SAMPLE = 2000

    def __init__(self, batch: Batch, counts: dict[str, int], recent: int, tokens: dict,
                 sample_s: float | None = None):
        super().__init__(counts)
        self.batch = batch
        self.rows_per_minute = self._rate(batch, recent, sample_s)
        remaining = self.remaining
        if batch.is_finished or remaining == 0:
            self.eta_seconds = 0 if remaining == 0 else None
        elif self.rows_per_minute:
            self.eta_seconds = int(remaining / self.rows_per_minute * 60)
        else:
            self.eta_seconds = None
        self.prompt_tokens = tokens["p"] or 0
        self.output_tokens = tokens["o"] or 0

    @classmethod
    def for_batch(cls, batch: Batch, counts: dict[str, int] | None = None) -> Progress:
        """`counts` may be passed when the caller already has them (the API caches them)."""
        counts = counts if counts is not None else batch.status_counts()
        now = timezone.now()
        sample_s = None
        recent = 0
        if not batch.is_finished:
            # The newest finished rows, through the (batch, finished_at) index alone: with the
            # status in the query, PostgreSQL's planner (its statistics taken while the rows
            # were pending) read all the batch's succeeded rows instead, 0.6-1.1 s at 600,000.
            newest = list(BatchResult.objects.filter(
                batch=batch, finished_at__gte=now - cls.RATE_WINDOW,
            ).order_by("-finished_at").values_list("finished_at", "status")[:cls.RATE_SAMPLE])
            ran = (BatchResult.Status.SUCCEEDED, BatchResult.Status.FAILED)  # not cancelled
            recent = sum(status in ran for _, status in newest)
            if len(newest) == cls.RATE_SAMPLE:
                sample_s = (now - newest[-1][0]).total_seconds()
        # The engine adds each write's tokens to the batch, so no SUM over the rows is needed.
        tokens = {"p": batch.prompt_tokens, "o": batch.output_tokens}
        return cls(batch, counts, recent, tokens, sample_s)

    def _rate(self, batch: Batch, recent: int, sample_s: float | None) -> float:
        """Rows per minute over the last minute (or over the batch's life if shorter); when more
        than RATE_SAMPLE rows finished in it, over the time the last RATE_SAMPLE took."""
        if not batch.started_at:
            return 0.0
        end = batch.finished_at or timezone.now()
        elapsed = (end - batch.started_at).total_seconds()
        if batch.is_finished:
            ran = self.processed
            return round(ran / elapsed * 60, 1) if elapsed > 0 else float(ran)
        window = min(elapsed, self.RATE_WINDOW.total_seconds())
        if sample_s is not None:
            window = min(window, max(sample_s, 1.0))
        return round(recent / window * 60, 1) if window >= 1 else 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


# Registered with the app here; they live with the rest of notifications.
from batches.notifications.models import (  # noqa: E402, F401
    FINAL_EVENTS,
    Delivery,
    DeliveryAttempt,
    Event,
    NotificationSettings,
    WebhookEndpoint,
)
