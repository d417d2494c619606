"""The new-batch page and its live preview (detected columns, first rendered prompts).

The chosen file is staged (staging.py) the moment it is picked: the preview re-reads it while
the prompt is typed, and Create uses it, so neither a preview nor a refused submit loses it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from batches import ingest, prompts, services
from batches.models import StagedUpload
from batches.web import output, staging
from batches.web.forms import BatchForm, max_upload_bytes

PREVIEW_ROWS = 3
# A preview shows values and rendered prompts clipped to these lengths.
SAMPLE_VALUE_CHARS = 4000
PREVIEW_PROMPT_CHARS = 20_000


def _api_key_missing() -> bool:
    return not settings.GEMINI_API_KEY and not settings.DEMO_MODE


def _too_big(size: int) -> str:
    return (f"The file is {size / 1024 / 1024:.1f} MB; "
            f"the limit is {settings.BATCH_MAX_UPLOAD_MB} MB.")


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
        staged, size_error = _staged_from(request)
        form = BatchForm(request.POST, request.FILES, staged=staged)
        if form.is_valid():
            try:
                with staging.open_staged(staged) as file:
                    batch = services.batch_create(owner=request.user,
                                                  **form.service_kwargs(file, staged.filename))
            except services.ServiceError as err:
                form.add_service_error(err)
            else:
                staging.discard(staged)
                messages.success(
                    request, f"Created “{batch.display_name}” with {batch.total_rows:,} rows."
                )
                for warning in getattr(batch, "warnings", []):
                    messages.warning(request, warning)
                return redirect("batch_detail", batch_id=batch.pk)
        form.describe_errors()
    else:
        form = BatchForm()
    context = {"form": form, "api_key_missing": _api_key_missing(),
               "preview_params": output.PREVIEW_PARAMS, "field_types": output.TYPE_CHOICES}
    if request.method == "POST":
        context.update(preview_context(staged, request.POST))
        if size_error:
            context["file_error"] = size_error
    return render(request, "batches/batch_new.html", context)


def _ingest_message(err: ingest.IngestError) -> str:
    message = str(err)
    line = getattr(err, "line", None)
    if line and f"line {line}" not in message.lower():
        message = f"Line {line}: {message}"
    return message


def _clip(value: Any) -> Any:
    """A sample value as the preview keeps it: text clipped, anything else as clipped text."""
    if not isinstance(value, str):
        value = prompts.format_value(value)
    return value[:SAMPLE_VALUE_CHARS]


def _read(staged: StagedUpload, sheet: str) -> dict[str, Any]:
    rows, lines = [], []
    try:
        with staging.open_staged(staged) as file:
            table = ingest.open_table(file, filename=staged.filename, sheet=sheet or None)
            try:
                for row in table.rows:
                    rows.append({k: _clip(v) for k, v in row.items()})
                    lines.append(table.line or len(rows))
                    if len(rows) == PREVIEW_ROWS:
                        break
            finally:
                if close := getattr(table.rows, "close", None):
                    close()
    except ingest.IngestError as err:
        return {"file_error": _ingest_message(err)}
    return {"columns": list(table.columns), "rows": rows, "lines": lines,
            "warnings": list(table.warnings or []), "format": table.format,
            "sheets": table.sheets if len(table.sheets) > 1 else [], "sheet": table.sheet or ""}


def preview_context(staged: StagedUpload | None, post: QueryDict) -> dict[str, Any]:
    """What the preview shows, and whether anything in it would make Create refuse."""
    prompt_text = post.get("prompt", "")
    conversation_column = post.get("conversation_column", "")
    sheet = post.get("sheet", "")
    context: dict[str, Any] = {"staged": staged}
    if staged is not None:
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
                context["unknown"] = [p for p in template.placeholders if p not in columns]
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
    staged, size_error = _staged_from(request)
    post = request.POST.copy()
    if request.FILES.get("file"):
        post["sheet"] = ""  # a newly chosen file starts on its first sheet
    context = preview_context(staged, post)
    if size_error:
        context.update(file_error=size_error, blocking=True)
    context["oob"] = True
    return render(request, "batches/partials/batch_new_preview.html", context)
