"""Write actions shared by the pages, the API, the admin and the CLI."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from batches import (
    costs,
    documents,
    ingest,
    languages,
    notifications,
    outputs,
    preferences,
    prompts,
    row_insert,
)
from batches.engine import tasks
from batches.models import Batch, BatchResult, Mode, Priority, UserSettings
from batches.providers import capabilities, catalog

UNSET: Any = object()  # an argument not given, where None means something
MAX_CONCURRENCY = 500  # for anyone; others are held to settings.BATCH_MAX_CONCURRENCY
MAX_RETRIES = 20
MAX_OUTPUT_TOKENS = 1_048_576  # far above any Gemini model's limit, far below a 32-bit int
HIGH_PRIORITY_PERMISSION = "batches.use_high_priority"
# Validated rows wait in memory up to this size, then on disk, until the transaction opens.
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024


class ServiceError(Exception):
    """An action that cannot be done; str(err) is the message for the user."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None,
                 column: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.line = line
        self.column = column


class InvalidInput(ServiceError):
    """The file, the prompt or a setting is wrong (HTTP 400)."""


class ActionNotAllowed(ServiceError):
    """The action does not apply to the batch's current state (HTTP 409)."""


class LimitReached(ServiceError):
    """The user already has the maximum number of active batches (HTTP 429)."""


class RateLimited(LimitReached):
    """The user created batches too fast; `retry_after` is in seconds (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class NotPermitted(ServiceError):
    """The user may not use a setting, e.g. high priority (HTTP 403)."""


def parse_priority(value: Any) -> int:
    if isinstance(value, int) and value in Priority.values:
        return value
    names = {label: v for v, label in Priority.choices}
    if isinstance(value, str) and value.lower() in names:
        return names[value.lower()]
    raise InvalidInput("Priority must be one of high, normal, low.", field="priority")


def prompt_template(prompt: str) -> prompts.Template:
    """The parsed prompt, or InvalidInput naming the problem (its length, an empty {{}})."""
    cap = settings.BATCH_MAX_PROMPT_CHARS
    if cap and len(prompt) > cap:
        raise InvalidInput(f"The prompt is {len(prompt):,} characters long; the limit is "
                           f"{cap:,}. Put long shared text in a column instead.", field="prompt")
    try:
        return prompts.parse(prompt)
    except prompts.TemplateError as err:
        raise InvalidInput(str(err), field="prompt") from err


def _check_system_instruction(text: str) -> None:
    cap = settings.BATCH_MAX_SYSTEM_INSTRUCTION_CHARS
    if cap and len(text) > cap:
        raise InvalidInput(f"The system instruction is {len(text):,} characters long; the limit "
                           f"is {cap:,}.", field="system_instruction")


def max_concurrency_for(user) -> int:
    """The highest concurrency `user` may give a batch: staff may go up to MAX_CONCURRENCY."""
    if getattr(user, "is_staff", False) or not settings.BATCH_MAX_CONCURRENCY:
        return MAX_CONCURRENCY
    return min(settings.BATCH_MAX_CONCURRENCY, MAX_CONCURRENCY)


def may_use_high_priority(user) -> bool:
    return bool(getattr(user, "is_staff", False) or user.has_perm(HIGH_PRIORITY_PERMISSION))


def _check_allowed(owner, *, priority: int | None, concurrency: int | None) -> None:
    if priority == Priority.HIGH and not may_use_high_priority(owner):
        raise NotPermitted("High priority needs the “use high priority” permission; ask an "
                           "administrator, or use normal priority.", field="priority")
    cap = max_concurrency_for(owner)
    if concurrency is not None and concurrency > cap:
        # A valid value (MAX_CONCURRENCY is checked apart) that this user may not use: 403.
        raise NotPermitted(f"Concurrency above {cap} is for staff; use 1 to {cap}.",
                           field="concurrency")


def _check_settings(*, concurrency: int, max_retries: int, temperature: float | None,
                    max_output_tokens: int | None) -> None:
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidInput(f"Concurrency must be between 1 and {MAX_CONCURRENCY}.",
                           field="concurrency")
    if not 0 <= max_retries <= MAX_RETRIES:
        raise InvalidInput(f"Max retries must be between 0 and {MAX_RETRIES}.",
                           field="max_retries")
    if temperature is not None and not 0 <= temperature <= 2:
        raise InvalidInput("Temperature must be between 0 and 2.", field="temperature")
    if max_output_tokens is not None and not 1 <= max_output_tokens <= MAX_OUTPUT_TOKENS:
        raise InvalidInput(f"Max output tokens must be between 1 and {MAX_OUTPUT_TOKENS:,}.",
                           field="max_output_tokens")


def batch_create(
    *,
    owner,
    prompt: str,
    file: IO[bytes] | None = None,
    filename: str = "",
    rows: list[dict] | None = None,
    name: str = "",
    model: str | None = None,
    system_instruction: str | None = None,
    temperature: float | None = None,
    max_output_tokens: int | None = None,
    concurrency: int | None = None,
    max_retries: int = 3,
    priority: int | str = Priority.NORMAL,
    conversation_column: str = "",
    sheet: str | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    response_schema: dict | None = None,
    output_fields: list[dict] | None = None,
    webhook_url: str = "",
    files: list[tuple[str, IO[bytes]]] | None = None,
    documents: list[tuple[str, IO[bytes]]] | None = None,
    duplicates: str | None = None,
    start: bool = True,
    use_cache: bool = True,
    parent: Batch | None = None,
    thinking: str | None = None,
    budget: Any = None,
    mode: str = Mode.ONLINE,
    fallback_online: bool = True,
    language: str | None = None,
    google_search: bool = False,
    url_context: bool = False,
) -> Batch:
    """Validate the input and create the batch with all its rows in one transaction, or nothing.

    Input: a `file`, several `files` (one batch, a source_file column), JSON `rows`, or
    `documents` alone (a row per file); a spreadsheet or rows may come with `documents` that
    `{{file:column}}` refers to. `duplicates` ("keep" or "skip") says what to do with files
    whose bytes were already uploaded. Stored documents are removed again on any error.

    `output_fields` (the field editor's list) or `response_schema` (a JSON Schema) make a
    columns batch; neither makes a text batch. With `start=False` the batch is a draft: rows
    are stored, nothing runs (batches.iterations). The whole file is read and every row checked
    before the transaction opens, so no write lock is held while an upload is parsed (on SQLite
    that lock stops every other write).

    model, system_instruction, concurrency, thinking and language left as None take the owner's
    own defaults (batches.preferences), and the batch stores what it used."""
    # Browsers send CRLF from a textarea; the model should see the text as written.
    prompt = normalise_newlines(prompt)
    template = prompt_template(prompt)
    chosen = creation_settings(owner, model=model, system_instruction=system_instruction,
                               concurrency=concurrency, thinking=thinking, language=language,
                               google_search=google_search, url_context=url_context)
    model, system_instruction = chosen["model"], chosen["system_instruction"]
    concurrency, thinking, language = chosen["concurrency"], chosen["thinking"], chosen["language"]
    if webhook_url:
        try:
            notifications.check_url(webhook_url)
        except notifications.UnsafeURL as err:
            raise InvalidInput(str(err), field="webhook_url") from err
    _check_settings(concurrency=concurrency, max_retries=max_retries, temperature=temperature,
                    max_output_tokens=max_output_tokens)
    priority = parse_priority(priority)
    budget = parse_budget(budget)
    model_name = model or settings.GEMINI_DEFAULT_MODEL
    _check_provider_options(model_name, thinking=thinking,
                            documents=bool(documents or template.file_columns))
    mode = parse_mode(mode, conversation_column=conversation_column, documents=documents,
                      model=model_name, grounding=bool(google_search or url_context))
    _check_allowed(owner, priority=priority, concurrency=concurrency)
    if file is None and rows is None and not files and not documents:
        raise InvalidInput("Send a file, rows or documents.", field="file")
    if start:  # a draft does not count against the cap
        check_active_limit(owner)
    _count_creation(owner)
    if files and not filename:
        filename = files[0][0] if len(files) == 1 else f"{files[0][0]} and {len(files) - 1} more"
    if documents and not (file or files or rows is not None) and not filename:
        filename = documents[0][0] if len(documents) == 1 else \
            f"{documents[0][0]} and {len(documents) - 1} more"
    source, intake = _gather(template, file=file, filename=filename, files=files, rows=rows,
                             documents=documents, duplicates=duplicates, sheet=sheet)
    with intake.staging:  # any error below removes the stored documents again
        response_schema = output_schema(output_fields, response_schema, intake.table.columns)
        check_tools_with_output(model, response_schema, google_search=google_search,
                                url_context=url_context)
        batch = _create_batch(
            intake, template, source, conversation_column,
            owner=owner,
            name=name or _default_name(filename),
            source_filename=(filename or "")[:255],
            prompt_template=prompt,
            model_name=model_name,
            system_instruction=system_instruction or "",
            temperature=temperature,
            max_output_tokens=max_output_tokens,
            concurrency=concurrency,
            max_retries=max_retries,
            priority=priority,
            conversation_column=conversation_column or "",
            rpm_limit=rpm_limit if rpm_limit is not None else catalog.default_rpm(model_name),
            tpm_limit=tpm_limit if tpm_limit is not None else catalog.default_tpm(model_name),
            response_schema=response_schema,
            webhook_url=webhook_url,
            status=Batch.Status.PENDING if start else Batch.Status.DRAFT,
            use_cache=use_cache,
            parent=parent,
            thinking=thinking,
            budget=budget,
            mode=mode,
            fallback_online=bool(fallback_online),
            language=language,
            google_search=google_search,
            url_context=url_context,
        )
    batch.warnings = list(intake.table.warnings)
    return batch


def _check_provider_options(model: str, *, thinking: str, documents: bool) -> None:
    """What the model's provider cannot honour is refused before anything is stored."""
    try:
        catalog.check_options(model, thinking=thinking, documents=documents)
    except catalog.OptionError as err:
        raise InvalidInput(err.message, field=err.field) from err


def _gather(template: prompts.Template, **kwargs: Any) -> tuple[str, documents.Intake]:
    """Open the input (see documents.gather) with errors as InvalidInput naming the field."""
    if kwargs.get("rows") is not None:
        source = "rows"
    elif kwargs.get("file") is None and not kwargs.get("files"):
        source = "documents"
    else:
        source = "file"
    try:
        return source, documents.gather(template=template, **kwargs)
    except ingest.IngestError as err:
        raise _ingest_error(err, source) from err
    except documents.DocumentError as err:
        raise InvalidInput(err.message, field="documents") from err


def _check_columns(table: ingest.Table, template: prompts.Template,
                   conversation_column: str) -> None:
    try:
        template.validate(table.columns)
    except prompts.TemplateError as err:
        raise InvalidInput(str(err), field="prompt") from err
    if conversation_column and conversation_column not in table.columns:
        raise InvalidInput(
            f"The conversation column {conversation_column!r} is not a column of the file. "
            f"The columns are: {', '.join(table.columns)}.",
            field="conversation_column",
        )


def _create_batch(intake: documents.Intake, template: prompts.Template, source: str,
                  conversation: str, *, owner, **fields: Any) -> Batch:
    table = intake.table
    _check_columns(table, template, conversation)
    draft = fields.get("status") == Batch.Status.DRAFT
    # Every row is read, checked and spooled before the transaction (and its write lock) opens.
    with _spooled_intake(intake, template, source, conversation) as (spool, total):
        with transaction.atomic():
            if not draft:  # drafts do not count against the cap (batches.iterations)
                check_active_limit(owner, lock=True)
            batch = Batch.objects.create(owner=owner, columns=table.columns, total_rows=total,
                                         last_error="\n".join(table.warnings), **fields)
            intake.bind(batch)
            _create_intake_rows(batch, intake, spool)
            if not draft:
                transaction.on_commit(lambda: tasks.enqueue_batch(batch.pk))
    return batch


@contextmanager
def _spooled_intake(intake: documents.Intake, template: prompts.Template, source: str,
                    conversation_column: str) -> Iterator[tuple[IO[str], int]]:
    """The intake's rows read, checked and spooled (see _spool_rows); InvalidInput if none."""
    with _spool_rows(intake.table, template, conversation_column, source) as (spool, total):
        if total == 0:
            if source == "documents":
                raise InvalidInput("Every file was a duplicate and was skipped; there are no "
                                   "rows.", field="documents")
            raise InvalidInput("The file has a header but no rows.", field=source)
        yield spool, total


def _create_intake_rows(batch: Batch, intake: documents.Intake, spool: IO[str],
                        start: int = 0) -> int:
    """Store the spooled rows from index `start`, with the documents they name (the intake
    must be bound to the batch)."""
    try:
        total = _create_rows(batch, _unspool(spool), start=start,
                             documents_of=intake.document_ids if intake.attaches else None)
        intake.check_references()
    except documents.DocumentError as err:
        raise InvalidInput(err.message, field="documents") from err
    return total


def parse_mode(value: Any, *, conversation_column: str = "", documents: Any = None,
               model: str = "", grounding: bool = False) -> str:
    """"online" or "batch" (Gemini Batch Mode); InvalidInput naming the field otherwise."""
    mode = str(value or Mode.ONLINE).strip().lower()
    if mode not in Mode.values:
        raise InvalidInput("Mode must be online or batch.", field="mode")
    if mode == Mode.BATCH and model and catalog.provider_name(model) != catalog.GEMINI:
        raise InvalidInput(f"Batch mode is Gemini's; {model} runs online only.", field="mode")
    if mode == Mode.BATCH and grounding:
        raise InvalidInput("Batch mode does not take grounding tools yet; use online mode.",
                           field="mode")
    if mode == Mode.BATCH and conversation_column:
        raise InvalidInput("Batch mode sends rows independently; a conversation needs online "
                           "mode.", field="mode")
    if mode == Mode.BATCH and documents:
        raise InvalidInput("Batch mode does not take documents yet; use online mode.",
                           field="mode")
    return mode
def parse_language(value: Any) -> str:
    try:
        return languages.parse(value)
    except languages.UnknownLanguage as err:
        raise InvalidInput(str(err), field="language") from err


def check_tools(model: str, *, google_search: bool, url_context: bool) -> None:
    """Refuse a grounding tool the model does not take (providers.capabilities)."""
    for field, on in (("google_search", google_search), ("url_context", url_context)):
        if on and not capabilities.supports(model, field):
            raise InvalidInput(f"{model} cannot use “{capabilities.TOOLS[field]}”; choose a "
                               "model that can, or turn it off.", field=field)


def check_tools_with_output(model: str, response_schema: dict | None, *, google_search: bool,
                            url_context: bool) -> None:
    """Refuse grounding together with columns output on a model that cannot combine them."""
    if response_schema is None or capabilities.tools_with_schema(model):
        return
    for field, on in (("google_search", google_search), ("url_context", url_context)):
        if on:
            raise InvalidInput(f"{model} cannot combine “{capabilities.TOOLS[field]}” with "
                               "columns output; use text output, or a Gemini 3 model.",
                               field=field)


def creation_settings(owner, *, model: str | None, system_instruction: str | None,
                      concurrency: int | None, thinking: str | None, language: str | None,
                      google_search: bool = False, url_context: bool = False) -> dict[str, Any]:
    """The settings a new batch of `owner` uses, checked: those given, else the owner's own
    defaults (batches.preferences), else the server's."""
    prefs = preferences.for_user(owner)
    model = model or prefs.model
    given = None if system_instruction is None else normalise_newlines(system_instruction)
    instruction = preferences.system_instruction(prefs, given)
    _check_system_instruction(instruction)
    chosen = {
        "model": model,
        "system_instruction": instruction,
        "concurrency": prefs.concurrency if concurrency is None else concurrency,
        "thinking": parse_thinking(prefs.thinking if thinking is None else thinking),
        "language": parse_language(prefs.language if language is None else language),
    }
    check_tools(model, google_search=bool(google_search), url_context=bool(url_context))
    return chosen


def user_settings_update(*, user, **changes: Any) -> UserSettings:
    """Change the user's own defaults for new batches; InvalidInput naming the field, and
    nothing saved, when one is wrong. Only the fields given change."""
    row = preferences.stored(user)
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "model":
            value = (value or "").strip()
            if value:
                try:
                    catalog.check_model(value)
                except catalog.OptionError as err:
                    raise InvalidInput(err.message, field="model") from err
        elif name == "system_instruction":
            value = normalise_newlines(value or "")
            _check_system_instruction(value)
        elif name == "language":
            value = parse_language(value)
        elif name == "concurrency":
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or not (
                        1 <= value <= MAX_CONCURRENCY):
                    raise InvalidInput(f"Concurrency must be between 1 and {MAX_CONCURRENCY}.",
                                       field="concurrency")
                _check_allowed(user, priority=None, concurrency=value)
        elif name == "thinking":
            value = "" if value in (None, "") else parse_thinking(value)
        elif name == "apply_overrides":
            value = bool(value)
        else:
            raise InvalidInput(f"Unknown setting {name!r}.", field=name)
        checked[name] = value
    for name, value in checked.items():
        setattr(row, name, value)
    row.save()
    return row


def parse_thinking(value: Any) -> str:
    try:
        return costs.parse_thinking(value)
    except ValueError as err:
        raise InvalidInput(str(err), field="thinking") from err


def parse_budget(value: Any):
    """A budget amount (Decimal) or None for no budget."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return costs.parse_amount(value)
    except ValueError as err:
        raise InvalidInput(f"Budget: {err}", field="budget") from err


def batch_estimate(
    *,
    owner,
    prompt: str,
    file: IO[bytes] | None = None,
    filename: str = "",
    rows: list[dict] | None = None,
    model: str | None = None,
    system_instruction: str | None = None,
    temperature: float | None = None,
    max_output_tokens: int | None = None,
    concurrency: int | None = None,
    max_retries: int = 3,
    sheet: str | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    thinking: str | None = None,
    language: str | None = None,
    google_search: bool = False,
    url_context: bool = False,
    response_schema: dict | None = None,
    output_fields: list[dict] | None = None,
    files: list[tuple[str, IO[bytes]]] | None = None,
    documents: list[tuple[str, IO[bytes]]] | None = None,
    duplicates: str | None = None,
    conversation_column: str = "",
    **ignored: Any,
) -> costs.Estimate:
    """What batch_create with the same input would cost and take; creates nothing. The input is
    checked as batch_create checks it, so the estimate refuses what Create would."""
    prompt = normalise_newlines(prompt)
    chosen = creation_settings(owner, model=model, system_instruction=system_instruction,
                               concurrency=concurrency, thinking=thinking, language=language,
                               google_search=google_search, url_context=url_context)
    model, concurrency, thinking = chosen["model"], chosen["concurrency"], chosen["thinking"]
    system_instruction = languages.with_language(chosen["system_instruction"],
                                                 chosen["language"])
    try:
        template = prompts.parse(prompt)
    except prompts.TemplateError as err:
        raise InvalidInput(str(err), field="prompt") from err
    _check_settings(concurrency=concurrency, max_retries=max_retries, temperature=temperature,
                    max_output_tokens=max_output_tokens)
    if file is None and rows is None and not files and not documents:
        raise InvalidInput("Send a file, rows or documents.", field="file")
    source, intake = _gather(template, file=file, filename=filename, files=files, rows=rows,
                             documents=documents, duplicates=duplicates, sheet=sheet)
    try:
        _check_columns(intake.table, template, conversation_column)
        check_tools_with_output(
            model, output_schema(output_fields, response_schema, intake.table.columns),
            google_search=google_search, url_context=url_context)
        estimate = costs.estimate(
            model=model, prompts=(template.render(row) for row in intake.table.rows),
            system_instruction=system_instruction, max_output_tokens=max_output_tokens,
            thinking=thinking, concurrency=concurrency,
            rpm_limit=rpm_limit if rpm_limit is not None else catalog.default_rpm(model),
            tpm_limit=tpm_limit if tpm_limit is not None else catalog.default_tpm(model),
            output_tokens_per_row=costs.earlier_output_per_row(owner, model, prompt))
    except ingest.IngestError as err:
        raise _ingest_error(err, source) from err
    finally:
        intake.staging.discard()  # the estimate keeps no document
    if intake.staging.files or template.file_columns:
        estimate.notes.append("Attached documents are not counted in the input estimate; each "
                              "adds its own tokens (Gemini counts 258 per PDF page).")
    return estimate


def batch_set_budget(*, batch: Batch, budget: Any) -> Batch:
    """Set, raise, lower or remove (None) the batch's budget. A batch paused because its budget
    was reached runs again once the new budget leaves room."""
    amount = parse_budget(budget)
    with transaction.atomic():
        Batch.objects.filter(pk=batch.pk).update(budget=amount)
        batch.refresh_from_db()
        # The batch's own budget paused it (not the owner's monthly limit).
        paused_by_budget = batch.paused and batch.last_error.startswith(
            (costs.BUDGET_MESSAGE_PREFIXES[0], costs.BUDGET_MESSAGE_PREFIXES[2]))
        if paused_by_budget and (amount is None or amount > batch.cost_spent):
            Batch.objects.filter(pk=batch.pk).update(last_error="")
            _reopen(batch)
    return batch


def output_schema(output_fields: list | None, response_schema: dict | None,
                  columns: list[str]) -> dict | None:
    """The schema a batch stores for its columns output, checked against the limits and the
    input columns; None for a text batch."""
    if output_fields is not None and response_schema is not None:
        raise InvalidInput("Send output_fields or response_schema, not both.",
                           field="output_fields")
    field = "output_fields" if output_fields is not None else "response_schema"
    try:
        if output_fields is not None:
            schema = outputs.fields_to_schema(outputs.parse_fields(output_fields))
            outputs.check_names(schema["properties"], columns, "output_fields")
        elif response_schema is not None:
            schema = outputs.check_schema(response_schema)
            outputs.check_names(schema["properties"], columns, "response_schema.properties")
        else:
            return None
    except outputs.OutputSchemaError as err:
        raise InvalidInput(str(err), field=field) from err
    return schema


def _default_name(filename: str) -> str:
    stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0] if filename else ""
    return (stem or f"Batch {timezone.now():%Y-%m-%d %H:%M}")[:200]


def _ingest_error(err: ingest.IngestError, source: str) -> InvalidInput:
    field = source if err.field == "file" else err.field
    return InvalidInput(str(err), field=field, line=err.line, column=err.column)


def check_active_limit(owner, *, lock: bool = False, reopening: Batch | None = None) -> None:
    """LimitReached if the owner has as many active batches as allowed; `reopening` is a batch
    that is about to become active again (it does not count against itself)."""
    cap = settings.BATCH_MAX_ACTIVE_PER_USER
    if not cap:
        return
    if lock:
        # Locking the owner's row serialises concurrent creations by one user on PostgreSQL;
        # SQLite's IMMEDIATE transactions are serial already.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    others = Batch.objects.filter(owner=owner)
    if reopening is not None:
        others = others.exclude(pk=reopening.pk)
    active = others.active().count()
    if active >= cap:
        raise LimitReached(
            f"You already have {active} active batches (the limit is {cap}). "
            "Wait for one to finish or cancel one.",
        )


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _numbered(table: ingest.Table) -> Iterator[tuple[dict, int | None]]:
    """Each row with its line in the file, read as the row is (the table notes it); None for
    tables without lines (documents)."""
    for row in table.rows:
        yield row, getattr(table, "line", None)


def _count_creation(owner) -> None:
    """Count one batch creation against the owner's rate (settings.BATCH_CREATE_RATE).

    Every entry point creates through here, and the counter lives in the shared cache (Redis,
    or the database cache), so all web processes together allow the configured rate."""
    allowed, retry_after = _take_creation_slot(owner.pk)
    if not allowed:
        raise RateLimited(
            f"You have created too many batches recently (the limit is "
            f"{settings.BATCH_CREATE_RATE.replace('/', ' per ')}). Try again in "
            f"{retry_after} seconds.", retry_after=retry_after)


RATE_PERIODS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'60/hour' -> (60, 3600)."""
    count, period = rate.split("/")
    return int(count), RATE_PERIODS_S[period.strip()[0].lower()]


def _take_creation_slot(user_pk: int) -> tuple[bool, int]:
    """(allowed, seconds until the next window) for one more creation in a fixed window.

    Each creation takes a numbered slot with cache.add, which is atomic in every backend
    (Redis SET NX, the database cache's unique key, locmem's lock), so exactly `limit` pass per
    window even where cache.incr is a read and a write (the database cache). The counter only
    says where to start looking for a free slot."""
    if not settings.BATCH_CREATE_RATE:
        return True, 0
    limit, period = parse_rate(settings.BATCH_CREATE_RATE)
    now = time.time()
    window = int(now // period)
    key = f"batch-create:{user_pk}:{period}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        start = cache.incr(key)
    except ValueError:  # expired between add and incr
        start = 1
    for slot in range(max(1, start), limit + 1):
        if cache.add(f"{key}:{slot}", 1, timeout=period + 1):
            return True, 0
    return False, max(1, math.ceil((window + 1) * period - now))


@contextmanager
def _spool_rows(table, template: prompts.Template, conversation_column: str,
                source: str) -> Iterator[tuple[IO[str], int]]:
    """Read and check every row, keeping what each stores (input, line in the file, prompt,
    conversation key) as JSON lines in a temporary file; yields (file, row count). Ingest
    errors become InvalidInput.
    The caps on cells and on a row's rendered prompt apply here, before anything is stored."""
    max_cells, max_chars = settings.BATCH_MAX_CELLS, settings.BATCH_MAX_RENDERED_CHARS
    cells = total = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, mode="w+",
                                       encoding="utf-8") as spool:
        try:
            for total, (row, line) in enumerate(_numbered(table), 1):
                cells += len(row)
                if max_cells and cells > max_cells:
                    raise InvalidInput(f"The file has more than {max_cells:,} cells (the limit "
                                       f"is {max_cells:,}), counting up to row {total:,}.",
                                       field=source)
                prompt = template.render(row)
                if max_chars and len(prompt) > max_chars:
                    raise InvalidInput(
                        f"Row {total:,} makes a prompt of {len(prompt):,} characters; the limit "
                        f"is {max_chars:,}. Shorten its values or the prompt.", field=source)
                key = (prompts.format_value(row.get(conversation_column))[:255]
                       if conversation_column else "")
                # The input on a line of its own, as the JSON text the insert stores unparsed.
                spool.write(f"{json.dumps([line, prompt, key], ensure_ascii=False)}\n"
                            f"{json.dumps(row, ensure_ascii=False, default=str)}\n")
        except ingest.IngestError as err:
            raise _ingest_error(err, source) from err
        spool.seek(0)
        yield spool, total


def _unspool(spool: IO[str]) -> Iterator[tuple[row_insert.JsonText, int | None, str, str]]:
    """The spooled rows, each input kept as its JSON text: decoding it only to encode it
    again for the insert was a third of a large ingest's CPU (docs/performance.md)."""
    lines = iter(spool)
    for meta in lines:
        line, prompt, key = json.loads(meta)
        yield row_insert.JsonText(next(lines)[:-1]), line, prompt, key


def _create_rows(batch: Batch, rows: Iterable[tuple[row_insert.JsonText, int | None, str, str]],
                 *, start: int = 0,
                 documents_of: Callable[[dict], list[int]] | None = None) -> int:
    """Create the spooled rows; the batch's prompt_chars grows by their rendered prompts
    (budgets guess a row's cost from it before any answer)."""
    chars = 0

    def fields() -> Iterator[tuple]:
        nonlocal chars
        for index, (row, line, prompt, key) in enumerate(rows, start):
            chars += len(prompt)
            documents = documents_of(json.loads(row)) if documents_of else []
            yield index, line, row, prompt, key, documents

    total = row_insert.insert_rows(batch, fields())
    Batch.objects.filter(pk=batch.pk).update(prompt_chars=F("prompt_chars") + chars)
    return total


def _not_a_draft(batch: Batch, action: str) -> None:
    if batch.is_draft:
        raise ActionNotAllowed(f"The batch is a draft; start it first, then {action} it.")


def _reopen(batch: Batch) -> None:
    """Make a batch with pending rows runnable again and start workers on it after commit."""
    check_active_limit(batch.owner, lock=True, reopening=batch)
    changes = {}
    if batch.status == Batch.Status.FAILED or batch.last_error.startswith(
            costs.BUDGET_MESSAGE_PREFIXES):
        # A batch-level error (e.g. a missing API key) or a budget is what the user just fixed;
        # a budget still reached pauses the batch again with a fresh message.
        changes["last_error"] = ""
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.RUNNING if batch.started_at else Batch.Status.PENDING,
        paused=False,
        cancel_requested=False,
        finished_at=None,
        api_waiting_since=None,
        **changes,
    )
    transaction.on_commit(lambda: tasks.enqueue_batch(batch.pk))
    batch.refresh_from_db()


reopen = _reopen  # for batches.iterations (re-running chosen rows)


def batch_cancel(*, batch: Batch) -> int:
    """Stop claiming and cancel the rows not started; in-flight rows finish. Returns the count."""
    _not_a_draft(batch, "cancel")
    if batch.is_finished:
        raise ActionNotAllowed(f"The batch is already {batch.get_status_display().lower()}.")
    with transaction.atomic():
        Batch.objects.filter(pk=batch.pk).update(cancel_requested=True, paused=False)
        cancelled = batch.results.cancel_pending()
        if batch.provider_jobs.filter(finished_at__isnull=True).exists():
            # Its jobs are cancelled at the provider; what they answered first is kept.
            transaction.on_commit(lambda: async_task("batches.batchmode.tasks.cancel_jobs",
                                                     batch.pk))
    batch.finalise_if_done()
    batch.refresh_from_db()
    return cancelled


def batch_pause(*, batch: Batch) -> int:
    """Stop claiming new rows; in-flight rows finish. Returns the rows left waiting."""
    if batch.status not in (Batch.Status.PENDING, Batch.Status.RUNNING) or batch.cancel_requested:
        raise ActionNotAllowed(
            f"Only a pending or running batch can be paused; this one is "
            f"{batch.get_status_display().lower()}."
        )
    with transaction.atomic():
        Batch.objects.filter(pk=batch.pk).update(paused=True, status=Batch.Status.PAUSED)
        notifications.record_batch_event(batch.pk, notifications.EventType.PAUSED,
                                         reason=notifications.PauseReason.USER)
    batch.refresh_from_db()
    return batch.results.filter(status=BatchResult.Status.PENDING).count()


def batch_resume(*, batch: Batch) -> int:
    """Run a paused, cancelled, failed or interrupted batch again, including every cancelled row
    of a finished batch. Returns rows requeued."""
    _not_a_draft(batch, "resume")
    finished_without_cancelled = (
        batch.status in (Batch.Status.COMPLETED, Batch.Status.COMPLETED_WITH_ERRORS)
        and not batch.results.filter(status=BatchResult.Status.CANCELLED).exists()
    )
    if finished_without_cancelled:
        raise ActionNotAllowed(
            f"The batch is {batch.get_status_display().lower()}; "
            "use retry failed to run its failed rows again."
        )
    with transaction.atomic():
        requeued = batch.results.filter(status=BatchResult.Status.CANCELLED).retry()
        requeued += batch.results.release_expired_leases()
        stranded = batch.status in (Batch.Status.PENDING, Batch.Status.RUNNING)
        if stranded and not batch.paused and not requeued:
            if not batch.results.filter(status=BatchResult.Status.PENDING).exists():
                raise ActionNotAllowed("The batch is already running.")
        _reopen(batch)
    return requeued


def batch_retry_failed(*, batch: Batch) -> int:
    """Send every failed row back to pending with a fresh retry budget. Returns the rows."""
    _not_a_draft(batch, "retry")
    with transaction.atomic():
        retried = batch.results.filter(status=BatchResult.Status.FAILED).retry()
        if not retried:
            raise ActionNotAllowed("The batch has no failed rows to retry.")
        if batch.paused:
            batch.refresh_from_db()
        else:
            _reopen(batch)
    return retried


def batch_retry_row(*, batch: Batch, index: int) -> BatchResult:
    """Run one failed or cancelled row again."""
    try:
        row = batch.results.get(index=index)
    except BatchResult.DoesNotExist as err:
        raise InvalidInput(f"The batch has no row {index}.", field="index") from err
    if row.status not in (BatchResult.Status.FAILED, BatchResult.Status.CANCELLED):
        raise ActionNotAllowed(
            f"Row {row.index} is {row.status}; only failed or cancelled rows can be retried."
        )
    results_retry(results=batch.results.filter(pk=row.pk))
    row.refresh_from_db()
    return row


def results_retry(*, results) -> int:
    """Retry the failed or cancelled rows among `results` (any batches); skip the others.

    Returns the rows retried."""
    with transaction.atomic():
        batch_ids = set(
            results.filter(status__in=[BatchResult.Status.FAILED, BatchResult.Status.CANCELLED])
            .values_list("batch_id", flat=True).distinct()
        )
        retried = results.retry()
        # A draft's rows wait for its start (or its next sample run).
        for batch in Batch.objects.filter(pk__in=batch_ids).exclude(status=Batch.Status.DRAFT):
            if not batch.paused:
                _reopen(batch)
    return retried


def batch_update(*, batch: Batch, name: str | None = None, priority: int | str | None = None,
                 concurrency: int | None = None, max_retries: int | None = None,
                 output_fields: Any = UNSET, response_schema: Any = UNSET, by=None) -> Batch:
    """Rename, or change how the batch runs; workers pick the change up at their next claim.

    The output may change only while no row has run: `output_fields` or `response_schema`
    make it columns, both None make it text again. `by` is who makes the change (the owner
    when not given): what they may set is checked."""
    changes: dict[str, Any] = {}
    if output_fields is not UNSET or response_schema is not UNSET:
        ran = batch.results.filter(
            Q(attempts__gt=0) | Q(status__in=[BatchResult.Status.RUNNING,
                                              BatchResult.Status.SUCCEEDED,
                                              BatchResult.Status.FAILED]))
        if ran.exists():
            raise ActionNotAllowed("The output cannot change once rows have run: the rows "
                                   "already answered follow the old one.")
        changes["response_schema"] = output_schema(
            None if output_fields is UNSET else output_fields,
            None if response_schema is UNSET else response_schema, batch.columns)
    if name is not None:
        changes["name"] = name.strip()[:200]
    if priority is not None:
        changes["priority"] = parse_priority(priority)
    _check_allowed(by or batch.owner,
                   priority=None if changes.get("priority") == batch.priority
                   else changes.get("priority"),
                   concurrency=None if concurrency == batch.concurrency else concurrency)
    if concurrency is not None or max_retries is not None:
        _check_settings(
            concurrency=concurrency if concurrency is not None else batch.concurrency,
            max_retries=max_retries if max_retries is not None else batch.max_retries,
            temperature=None, max_output_tokens=None,
        )
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if max_retries is not None:
        changes["max_retries"] = max_retries
    if changes:
        Batch.objects.filter(pk=batch.pk).update(**changes)
        batch.refresh_from_db()
    return batch


def batch_delete(*, batch: Batch) -> None:
    """Stop the batch and delete it with its results.

    Workers holding rows of it find nothing to write to and move on."""
    Batch.objects.filter(pk=batch.pk).update(cancel_requested=True)
    names = list(batch.provider_jobs.filter(finished_at__isnull=True).exclude(name="")
                 .values_list("name", flat=True))
    batch.delete()
    if names:  # nothing is left to collect their answers into: cancel them at the provider
        transaction.on_commit(lambda: async_task("batches.batchmode.tasks.cancel_names", names))
