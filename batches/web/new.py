"""The new-batch page and its live preview (detected columns, first rendered prompts).

One chosen spreadsheet is staged (staging.py) the moment it is picked: the preview re-reads it
while the prompt is typed, and Create uses it, so neither a preview nor a refused submit loses
it. Several spreadsheets, or documents ("Rows from: documents"), are sent with Create itself;
their preview keeps a small sample in the page (`preview_sample`) for the prompt to render."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from batches import documents, ingest, prompts, services
from batches.models import StagedUpload
from batches.web import output, staging
from batches.web.forms import BatchForm, max_upload_bytes

PREVIEW_ROWS = 3
# A preview shows values and rendered prompts clipped to these lengths.
SAMPLE_VALUE_CHARS = 4000
PREVIEW_PROMPT_CHARS = 20_000


def _api_key_missing() -> bool:
    return not settings.GEMINI_API_KEY and not settings.DEMO_MODE


def _too_big(size: int, name: str = "The file") -> str:
    return (f"{name} is {size / 1024 / 1024:.1f} MB; "
            f"the limit is {settings.BATCH_MAX_UPLOAD_MB} MB.")


def _several(request: HttpRequest) -> bool:
    """Documents, or several spreadsheets: the files go with Create, nothing is staged."""
    return (request.POST.get("source") == "documents"
            or len(request.FILES.getlist("file")) > 1)


def _staged_from(request: HttpRequest) -> tuple[StagedUpload | None, str]:
    """The file this request brings (staged now) or names (staged before), and a size error."""
    upload = request.FILES.get("file")
    previous = staging.find(request.user, request.POST.get("staged_upload", ""))
    if upload is not None and upload.name:
        if upload.size > max_upload_bytes():
            return None, _too_big(upload.size)
        if previous is not None:
            staging.discard(previous)  # the new file replaces it
        return staging.stage(request.user, upload, upload.name), ""
    return previous, ""


@login_required
@require_http_methods(["GET", "POST"])
def batch_new(request: HttpRequest) -> HttpResponse:
    staged, size_error = (None, "")
    if request.method == "POST":
        if not _several(request):
            staged, size_error = _staged_from(request)
        form = BatchForm(request.POST, request.FILES, staged=staged, user=request.user)
        if form.is_valid():
            try:
                draft = bool(request.POST.get("draft"))
                batch = _create(request, form, staged, start=not draft)
            except services.ServiceError as err:
                form.add_service_error(err)
            else:
                if staged is not None:
                    staging.discard(staged)
                messages.success(
                    request, f"Created “{batch.display_name}” with {batch.total_rows:,} rows"
                    + (" as a draft: try it on a few rows, then start it." if draft else ".")
                )
                for warning in getattr(batch, "warnings", []):
                    messages.warning(request, warning)
                return redirect("batch_detail", batch_id=batch.pk)
        form.describe_errors()
    else:
        form = BatchForm(user=request.user)
    context = {"form": form, "api_key_missing": _api_key_missing(),
               "preview_params": output.PREVIEW_PARAMS, "field_types": output.TYPE_CHOICES}
    if request.method == "POST":
        context.update(preview_context(staged, request.POST, _uploaded_sample(request)))
        if size_error:
            context["file_error"] = size_error
    return render(request, "batches/batch_new.html", context)


def _create(request: HttpRequest, form: BatchForm, staged: StagedUpload | None, *,
            start: bool = True):
    """Create the batch (a draft with start=False) from the form and the staged file."""
    if staged is None:
        return services.batch_create(owner=request.user, start=start, **form.service_kwargs())
    with staging.open_staged(staged) as file:
        return services.batch_create(owner=request.user, start=start,
                                     **form.service_kwargs(file, staged.filename))


def _ingest_message(err: ingest.IngestError) -> str:
    message = str(err)
    line = getattr(err, "line", None)
    if line and f"line {line}" not in message.lower():
        message = f"Line {line}: {message}"
    return message


def _first_rows(table: ingest.Table) -> tuple[list[dict], list[int]]:
    rows, lines = [], []
    try:
        for row in table.rows:
            rows.append({k: _clip(v) for k, v in row.items()})
            lines.append(table.line or len(rows))
            if len(rows) == PREVIEW_ROWS:
                break
    finally:
        if close := getattr(table.rows, "close", None):
            close()
    return rows, lines


def _read(staged: StagedUpload, sheet: str) -> dict[str, Any]:
    try:
        with staging.open_staged(staged) as file:
            table = ingest.open_table(file, filename=staged.filename, sheet=sheet or None)
            rows, lines = _first_rows(table)
    except ingest.IngestError as err:
        return {"file_error": _ingest_message(err)}
    return {"columns": list(table.columns), "rows": rows, "lines": lines,
            "warnings": list(table.warnings or []), "format": table.format,
            "sheets": table.sheets if len(table.sheets) > 1 else [], "sheet": table.sheet or ""}


def _uploaded_sample(request: HttpRequest) -> dict[str, Any] | None:
    """The preview of documents or several spreadsheets sent with this request, if any."""
    if request.POST.get("source") == "documents":
        docs = request.FILES.getlist("documents")
        if not docs:
            return None
        rows = [{"filename": d.name, "size": d.size, "sha256": "…", "mime_type": "…",
                 "pages": "…"} for d in docs[:PREVIEW_ROWS]]
        return {"columns": list(documents.DOCUMENT_COLUMNS), "rows": rows,
                "lines": list(range(1, len(rows) + 1)), "format": "documents",
                "document_count": len(docs)}
    files = request.FILES.getlist("file")
    if len(files) < 2:
        return None
    for upload in files:
        if upload.size > max_upload_bytes():
            return {"file_error": _too_big(upload.size, upload.name)}
    try:
        table = ingest.open_tables([(f.name, f) for f in files], required=[],
                                   sheet=request.POST.get("sheet", "").strip() or None)
        rows, _ = _first_rows(table)
    except ingest.IngestError as err:
        return {"file_error": _ingest_message(err)}
    finally:
        for upload in files:
            upload.seek(0)
    return {"columns": list(table.columns), "rows": rows,
            "lines": list(range(1, len(rows) + 1)), "format": "several files",
            "file_count": len(files)}


def _clip(value: Any) -> Any:
    """A sample value as the preview keeps it: text clipped, anything else as clipped text."""
    if not isinstance(value, str):
        value = prompts.format_value(value)
    return value[:SAMPLE_VALUE_CHARS]


def _sample_from_post(raw: str) -> dict[str, Any] | None:
    """The sample a previous preview of documents or several files left in the page."""
    try:
        data = json.loads(raw)
        columns, rows = data["columns"], data["rows"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)
            and isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
        return None
    # The page sends the sample back: clip it as a fresh read would be.
    rows = [{k: _clip(v) for k, v in row.items()} for row in rows[:PREVIEW_ROWS]]
    sample: dict[str, Any] = {"columns": columns[:ingest.MAX_COLUMNS], "rows": rows,
                              "lines": list(range(1, len(rows) + 1))}
    for key in ("document_count", "file_count"):
        count = data.get(key)
        if isinstance(count, int) and count > 0:
            sample[key] = count
    sample["format"] = "documents" if "document_count" in sample else (
        "several files" if "file_count" in sample else "")
    return sample


def preview_context(staged: StagedUpload | None, post: QueryDict,
                    sample: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the preview shows, and whether anything in it would make Create refuse. The rows
    come from the staged spreadsheet, else from documents or several spreadsheets (`sample`,
    or the one a previous preview left in the page)."""
    prompt_text = post.get("prompt", "")
    conversation_column = post.get("conversation_column", "")
    sheet = post.get("sheet", "")
    documents_chosen = post.get("source") == "documents"
    context: dict[str, Any] = {"staged": staged}
    if sample is None and (staged is None or documents_chosen):
        sample = _sample_from_post(post.get("preview_sample", ""))
        if (sample is not None and post.get("source")
                and documents_chosen != ("document_count" in sample)):
            sample = None  # left by the other kind of input
    if sample is not None:
        context.update(sample)
        if "columns" in sample:
            context["sample_json"] = json.dumps(
                {"columns": sample["columns"],
                 "rows": [{k: _clip(v) for k, v in row.items()} for row in sample["rows"]],
                 "document_count": sample.get("document_count"),
                 "file_count": sample.get("file_count")},
                ensure_ascii=False, default=str)
    elif staged is not None and not documents_chosen:
        context.update(_read(staged, sheet.strip()))
    columns = context.get("columns")
    rows = context.get("rows", [])
    prompt_text = services.normalise_newlines(prompt_text)
    if prompt_text.strip():
        try:
            template = services.prompt_template(prompt_text)
        except services.InvalidInput as err:
            context["prompt_error"] = err.message
        else:
            context["placeholders"] = template.placeholders
            context["no_placeholder"] = not template.placeholders
            if columns is not None:
                context["unknown"] = [p for p in template.placeholders if p not in columns
                                      and p.removeprefix("file:").strip() not in columns]
                context["rendered"] = [(line, template.render(row)[:PREVIEW_PROMPT_CHARS])
                                       for line, row in zip(context["lines"], rows, strict=True)]
    conversation_column = conversation_column.strip()
    if columns is not None and conversation_column and conversation_column not in columns:
        context["conversation_error"] = (
            f"The conversation column “{conversation_column}” is not a column of the file."
        )
    context.update(output.preview_context(post, columns))
    context["blocking"] = any(context.get(k) for k in (
        "file_error", "prompt_error", "unknown", "conversation_error", "output_error"))
    return context


@login_required
@require_POST
def batch_new_preview(request: HttpRequest) -> HttpResponse:
    """The preview fragment: what the file holds and what the prompt makes of its first rows."""
    post = request.POST.copy()
    staged, size_error = (None, "")
    if _several(request):
        if post.get("source") == "documents":  # a staged spreadsheet waits for a switch back
            staged = staging.find(request.user, post.get("staged_upload", ""))
    else:
        staged, size_error = _staged_from(request)
        if request.FILES.get("file"):
            post["sheet"] = ""  # a newly chosen file starts on its first sheet
    context = preview_context(staged, post, _uploaded_sample(request))
    if size_error:
        context.update(file_error=size_error, blocking=True)
    context["oob"] = True
    return render(request, "batches/partials/batch_new_preview.html", context)


@login_required
@require_POST
def batch_new_estimate(request: HttpRequest) -> HttpResponse:
    """The estimate fragment: tokens, cost range and time for the form as filled in. One
    spreadsheet is read from its staged copy (the one the preview shows and Create uses);
    documents and several spreadsheets come with the request, as they do with Create."""
    staged, size_error = (None, "") if _several(request) else _staged_from(request)
    form = BatchForm(request.POST, request.FILES, staged=staged, user=request.user)
    # A file sent along was staged now: the page's staged_upload must name it from here on.
    context: dict[str, Any] = {"staged": staged,
                               "oob": bool(staged and request.FILES.get("file"))}
    if size_error:
        context["estimate_error"] = size_error
    elif not form.is_valid():
        context["estimate_error"] = "Choose a file and write a prompt first." if (
            "file" in form.errors or "prompt" in form.errors) else (
            "Fix the settings marked in the form first.")
    else:
        try:
            if staged is None:
                context["estimate"] = services.batch_estimate(owner=request.user,
                                                              **form.service_kwargs())
            else:
                with staging.open_staged(staged) as file:
                    context["estimate"] = services.batch_estimate(
                        owner=request.user, **form.service_kwargs(file, staged.filename))
        except services.ServiceError as err:
            context["estimate_error"] = err.message
    return render(request, "batches/partials/batch_new_estimate.html", context)
