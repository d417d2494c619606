"""The new-batch page and its live preview (detected columns, first rendered prompts)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from batches import ingest, prompts, services
from batches.web.forms import BatchForm, max_upload_bytes

PREVIEW_ROWS = 3
# Values kept in the page for re-rendering the preview while the prompt is typed.
SAMPLE_VALUE_CHARS = 4000
PREVIEW_PROMPT_CHARS = 20_000


def _api_key_missing() -> bool:
    return not settings.GEMINI_API_KEY and not settings.DEMO_MODE


@login_required
@require_http_methods(["GET", "POST"])
def batch_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = BatchForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                batch = services.batch_create(owner=request.user, **form.service_kwargs())
            except services.ServiceError as err:
                form.add_service_error(err)
            else:
                messages.success(
                    request, f"Created “{batch.display_name}” with {batch.total_rows:,} rows."
                )
                for warning in getattr(batch, "warnings", []):
                    messages.warning(request, warning)
                return redirect("batch_detail", batch_id=batch.pk)
    else:
        form = BatchForm()
    return render(request, "batches/batch_new.html", {
        "form": form,
        "api_key_missing": _api_key_missing(),
    })


def _ingest_message(err: ingest.IngestError) -> str:
    message = str(err)
    line = getattr(err, "line", None)
    if line and f"line {line}" not in message.lower():
        message = f"Line {line}: {message}"
    return message


def _sample_from_post(raw: str) -> tuple[list[str], list[dict]] | None:
    """The columns and rows a previous preview stored in the page, if they look right."""
    try:
        data = json.loads(raw)
        columns, rows = data["columns"], data["rows"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)
            and isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
        return None
    rows = [{k: _clip(v) for k, v in row.items()} for row in rows[:PREVIEW_ROWS]]
    return columns[:ingest.MAX_COLUMNS], rows


def _clip(value: Any) -> Any:
    """A sample value as the preview keeps it: text clipped, anything else as clipped text."""
    if not isinstance(value, str):
        value = prompts.format_value(value)
    return value[:SAMPLE_VALUE_CHARS]


def _read_preview(request: HttpRequest) -> dict[str, Any]:
    """Columns and sample rows from the uploaded file, or from the page's stored sample."""
    upload = request.FILES.get("file")
    if upload is None:
        sample = _sample_from_post(request.POST.get("preview_sample", ""))
        if sample is None:
            return {}
        return {"columns": sample[0], "rows": sample[1]}
    if upload.size > max_upload_bytes():
        return {"file_error": f"The file is {upload.size / 1024 / 1024:.1f} MB; "
                              f"the limit is {settings.BATCH_MAX_UPLOAD_MB} MB."}
    try:
        table, rows = ingest.preview(upload, filename=upload.name,
                                     sheet=request.POST.get("sheet", "").strip() or None,
                                     limit=PREVIEW_ROWS)
    except ingest.IngestError as err:
        return {"file_error": _ingest_message(err)}
    rows = [{k: _clip(v) for k, v in row.items()} for row in rows[:PREVIEW_ROWS]]
    return {"columns": list(table.columns), "rows": rows,
            "warnings": list(getattr(table, "warnings", []) or []),
            "format": getattr(table, "format", "")}


@login_required
@require_POST
def batch_new_preview(request: HttpRequest) -> HttpResponse:
    """The preview fragment: what the file holds and what the prompt makes of its first rows."""
    context = _read_preview(request)
    columns = context.get("columns")
    rows = context.get("rows", [])
    if columns is not None:
        context["sample_json"] = json.dumps({"columns": columns, "rows": rows},
                                            ensure_ascii=False, default=str)
    prompt_text = request.POST.get("prompt", "")
    if prompt_text.strip():
        try:
            template = services.prompt_template(prompt_text)
        except services.InvalidInput as err:
            context["prompt_error"] = err.message
        else:
            context["placeholders"] = template.placeholders
            if columns is not None:
                context["unknown"] = [p for p in template.placeholders if p not in columns]
                context["rendered"] = [template.render(row)[:PREVIEW_PROMPT_CHARS]
                                       for row in rows]
    conversation_column = request.POST.get("conversation_column", "").strip()
    if columns is not None and conversation_column and conversation_column not in columns:
        context["conversation_error"] = (
            f"The conversation column “{conversation_column}” is not a column of the file."
        )
    return render(request, "batches/partials/batch_new_preview.html", context)
