"""Drafts: edit what a draft will send, then start it."""

from __future__ import annotations

from itertools import islice
from typing import Any

from django.conf import settings
from django.db import transaction

from batches import prompts, services
from batches.engine import tasks
from batches.models import Batch, BatchResult
from batches.providers import catalog

RENDER_CHUNK = 2000


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()  # "leave this setting as it is" (None is a value: no temperature)

# The batch's running totals, for when its finished rows are reset.
NO_SPEND = dict(prompt_tokens=0, output_tokens=0, cached_count=0, saved_prompt_tokens=0,
                saved_output_tokens=0)

# Settings whose change alters what the model is asked, so earlier sample answers are stale.
_REQUEST_FIELDS = ("prompt_template", "system_instruction", "model_name", "temperature",
                   "max_output_tokens", "response_schema")


def _require_draft(batch: Batch, action: str) -> None:
    if not batch.is_draft:
        raise services.ActionNotAllowed(
            f"Only a draft can be {action}; this batch is {batch.get_status_display().lower()}.")


def batch_edit_draft(*, batch: Batch, prompt: Any = UNCHANGED, system_instruction: Any = UNCHANGED,
                     model: Any = UNCHANGED, temperature: Any = UNCHANGED,
                     max_output_tokens: Any = UNCHANGED, response_schema: Any = UNCHANGED,
                     output_fields: Any = UNCHANGED, name: Any = UNCHANGED,
                     concurrency: Any = UNCHANGED, max_retries: Any = UNCHANGED,
                     priority: Any = UNCHANGED, use_cache: Any = UNCHANGED, by=None) -> Batch:
    """Change a draft; a new prompt is checked against the columns as at creation and every
    row's rendered prompt is rebuilt. The output (`output_fields` or `response_schema`; both
    None: text) is checked as at creation and may change even after a sample ran. Answers of
    earlier sample runs are dropped when what the model is asked changes. Nothing changes when
    anything is invalid. `by` is who edits (the owner when not given): what they may set (high
    priority, concurrency above the per-user cap) is checked as at creation."""
    _require_draft(batch, "edited")
    changes: dict[str, Any] = {}
    template = None
    # Browsers send CRLF from a textarea; the model sees the text as written (as at creation).
    if prompt is not UNCHANGED:
        prompt = services.normalise_newlines(prompt)
    if system_instruction not in (UNCHANGED, None):
        system_instruction = services.normalise_newlines(system_instruction)
        services._check_system_instruction(system_instruction)
    if prompt is not UNCHANGED:
        try:
            template = services.prompt_template(prompt)  # its length capped as at creation
            template.validate(batch.columns)
        except prompts.TemplateError as err:
            raise services.InvalidInput(str(err), field="prompt") from err
        if template.file_columns != prompts.parse(batch.prompt_template).file_columns:
            # Each row's attached files were matched at creation; a new version keeps them too.
            raise services.InvalidInput(
                "A draft's prompt cannot change which {{file:...}} columns it attaches; create "
                "a new batch with the files instead.", field="prompt")
        changes["prompt_template"] = prompt
    if model is not UNCHANGED:
        model = model or settings.GEMINI_DEFAULT_MODEL
        try:
            catalog.check_model(model)
            catalog.check_options(model, thinking=batch.thinking,
                                  documents=batch.documents.exists())
        except catalog.OptionError as err:
            raise services.InvalidInput(err.message, field=err.field) from err
        # A grounded draft keeps its tools: the new model must take them too.
        services.check_tools(model, google_search=batch.google_search,
                             url_context=batch.url_context)
        changes["model_name"] = model
    services._check_settings(
        concurrency=batch.concurrency if concurrency is UNCHANGED else concurrency,
        max_retries=batch.max_retries if max_retries is UNCHANGED else max_retries,
        temperature=None if temperature is UNCHANGED else temperature,
        max_output_tokens=None if max_output_tokens is UNCHANGED else max_output_tokens)
    if output_fields is not UNCHANGED or response_schema is not UNCHANGED:
        changes["response_schema"] = services.output_schema(
            None if output_fields is UNCHANGED else output_fields,
            None if response_schema is UNCHANGED else response_schema, batch.columns)
    services.check_tools_with_output(
        changes.get("model_name", batch.model_name),
        changes.get("response_schema", batch.response_schema),
        google_search=batch.google_search, url_context=batch.url_context)
    simple = {"system_instruction": system_instruction, "temperature": temperature,
              "max_output_tokens": max_output_tokens,
              "concurrency": concurrency, "max_retries": max_retries, "use_cache": use_cache}
    changes.update({k: v for k, v in simple.items() if v is not UNCHANGED})
    if name is not UNCHANGED:
        changes["name"] = (name or "").strip()[:200] or batch.name
    if priority is not UNCHANGED:
        changes["priority"] = services.parse_priority(priority)
    services._check_allowed(
        by or batch.owner,
        priority=None if changes.get("priority", batch.priority) == batch.priority
        else changes["priority"],
        concurrency=None if concurrency in (UNCHANGED, batch.concurrency) else concurrency)
    if "system_instruction" in changes:
        changes["system_instruction"] = changes["system_instruction"] or ""

    stale = any(f in changes and changes[f] != getattr(batch, f) for f in _REQUEST_FIELDS)
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        _require_draft(locked, "edited")
        if changes:
            Batch.objects.filter(pk=batch.pk).update(**changes)
        if template is not None and changes["prompt_template"] != batch.prompt_template:
            _render_all(batch, template)
        if stale:
            # Running sample rows lose their claim too, so a late answer to the old prompt is
            # never written.
            batch.results.exclude(status=BatchResult.Status.PENDING).reset()
            Batch.objects.filter(pk=batch.pk).update(sampling=False, **NO_SPEND)
    batch.refresh_from_db()
    return batch


def _render_all(batch: Batch, template: prompts.Template) -> None:
    rows = batch.results.order_by("index").only("id", "input").iterator(chunk_size=RENDER_CHUNK)
    while chunk := list(islice(rows, RENDER_CHUNK)):
        for row in chunk:
            row.prompt = template.render(row.input if isinstance(row.input, dict) else {})
        BatchResult.objects.bulk_update(chunk, ["prompt"])


def batch_start(*, batch: Batch) -> Batch:
    """Run a draft in full. Answers of its sample run come back from the result cache."""
    _require_draft(batch, "started")
    with transaction.atomic():
        services.check_active_limit(batch.owner)
        # The status guard makes two concurrent starts start it once.
        started = Batch.objects.filter(pk=batch.pk, status=Batch.Status.DRAFT).update(
            status=Batch.Status.PENDING, sampling=False, **NO_SPEND)
        if not started:
            raise services.ActionNotAllowed("The batch has been started already.")
        # Finished sample rows run again: unchanged requests are answered by the cache at no
        # cost; rows still running keep their claim and are written as they finish.
        batch.results.filter(status__in=[BatchResult.Status.SUCCEEDED,
                                         BatchResult.Status.FAILED,
                                         BatchResult.Status.CANCELLED]).reset()
        transaction.on_commit(lambda: tasks.enqueue_batch(batch.pk))
    batch.refresh_from_db()
    return batch
