"""Output values as export cells: lists joined with `; `, objects as JSON text, and in XLSX
typed cells (numbers, booleans, dates)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from batches.outputs.fields import OutputField

LIST_SEPARATOR = "; "


def cell_text(value: Any) -> Any:
    """A CSV (or page) cell: numbers stay numbers, everything else becomes text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(cell_text(v)) for v in value)
    return json.dumps(value, ensure_ascii=False)


def xlsx_cell(value: Any, field: OutputField) -> Any:
    """An XLSX cell: numeric, boolean and date fields as typed cells, the rest as text."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float)):
        return value
    if field.kind == "date" and isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return value
    return cell_text(value)
