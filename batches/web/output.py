"""The new-batch page's Output section: Text, or Columns from the field editor or from a JSON
Schema (Advanced), read from the POST the same way for the form, the preview and the
"Advanced: JSON Schema" toggle, which shows the schema the editor builds."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_POST

from batches import outputs

EDITOR_KEYS = ("name", "type", "values", "description", "required")
# What the preview and the toggle read: never the file, which the preview stored already.
PREVIEW_PARAMS = ",".join(["prompt", "conversation_column", "staged_upload", "sheet",
                           "source", "preview_sample",
                           "output_mode", "output_advanced", "output_schema"]
                          + [f"field_{k}" for k in EDITOR_KEYS])
TYPE_CHOICES = list(outputs.FIELD_TYPES.items())


def wants_columns(data: QueryDict) -> bool:
    return data.get("output_mode") == "columns"


def wants_schema(data: QueryDict) -> bool:
    return wants_columns(data) and data.get("output_advanced") in ("on", "true", "1")


def editor_rows(data: QueryDict | None) -> list[dict[str, str]]:
    """The editor's rows as submitted (one empty row to start with)."""
    if data is None:
        return [{"name": "", "type": "text", "values": "", "description": "",
                 "required": "required"}]
    lists = {k: data.getlist(f"field_{k}") for k in EDITOR_KEYS}
    count = max((len(v) for v in lists.values()), default=0)
    rows = [{k: (lists[k][i] if i < len(lists[k]) else "") for k in EDITOR_KEYS}
            for i in range(count)]
    return rows or editor_rows(None)


def editor_fields(data: QueryDict) -> list[dict[str, Any]]:
    """The editor's non-empty rows as output_fields dicts."""
    fields = []
    for row in editor_rows(data):
        if not any(row[k].strip() for k in ("name", "values", "description")):
            continue
        field: dict[str, Any] = {"name": row["name"], "type": row["type"] or "text",
                                 "description": row["description"],
                                 "required": row["required"] != "optional"}
        if row["values"].strip():
            field["values"] = row["values"]
        fields.append(field)
    return fields


def output_kwargs(data: QueryDict) -> dict[str, Any]:
    """batch_create's output arguments; OutputSchemaError when the schema text is not JSON."""
    if not wants_columns(data):
        return {}
    if wants_schema(data):
        return {"response_schema": outputs.loads_schema(data.get("output_schema", ""))}
    return {"output_fields": editor_fields(data)}


def preview_context(data: QueryDict, columns: list[str] | None) -> dict[str, Any]:
    """The columns the output would make, or what is wrong with it."""
    if not wants_columns(data):
        return {}
    try:
        kwargs = output_kwargs(data)
        if "output_fields" in kwargs:
            schema = outputs.fields_to_schema(outputs.parse_fields(kwargs["output_fields"]))
            where = "output_fields"
        else:
            schema, where = kwargs["response_schema"], "response_schema.properties"
        if columns is not None:
            outputs.check_names(schema["properties"], columns, where)
    except outputs.OutputSchemaError as err:
        return {"output_error": str(err)}
    return {"output_columns": outputs.fields_from_schema(schema)}


@login_required
@require_POST
def batch_new_schema(request: HttpRequest) -> HttpResponse:
    """The Advanced box: the JSON Schema the field editor builds, ready to edit."""
    context: dict[str, Any] = {"schema_text": request.POST.get("output_schema", "")}
    fields = editor_fields(request.POST)
    if fields:
        try:
            schema = outputs.fields_to_schema(outputs.parse_fields(fields))
        except outputs.OutputSchemaError as err:
            context["schema_error"] = f"The fields above cannot make a schema yet: {err}"
        else:
            context["schema_text"] = json.dumps(schema, indent=2, ensure_ascii=False)
    return render(request, "batches/partials/batch_new_schema.html", context)
