"""JSON Lines: the keys of the first object are the columns; rows stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from batches.ingest.base import IngestError, Table, check_header, json_kind, too_many_rows


def start_jsonl(table: Table, lines: Iterator[str], max_rows: int) -> None:
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
    try:
        line, text = next(numbered)
    except StopIteration:
        raise IngestError("The file contains only blank lines.") from None
    first = _json_object(text, line)
    for key in first:
        if not key.strip():
            raise IngestError(f'Line {line} has a key with no name ("{key}").', line=line)
    table.columns = check_header(list(first), line=line)
    if not table.columns:
        raise IngestError(f"Line {line} is an empty object; the keys of the first object "
                          "become the columns.", line=line)
    table.rows = _jsonl_rows(table, first, line, numbered, table.columns, max_rows)


def _jsonl_rows(table: Table, first: dict, first_line: int, numbered: Iterator[tuple[int, str]],
                columns: list[str], max_rows: int) -> Iterator[dict[str, Any]]:
    known = set(columns)
    count = 0
    for line, obj in _chain_first(first, first_line, numbered):
        row = {}  # keys the object lacks stay missing and render as empty
        for key, value in obj.items():
            name = key if key in known else key.strip()
            if name not in known:
                raise IngestError(
                    f'Line {line} has the key "{key}", which the first line does not have. '
                    "The columns come from the first object: add the key there (even as null).",
                    line=line, column=key)
            row[name] = value
        count += 1
        if count > max_rows:
            raise too_many_rows(max_rows, line)
        table.line = line
        yield row


def _chain_first(first: dict, first_line: int,
                 numbered: Iterator[tuple[int, str]]) -> Iterator[tuple[int, dict]]:
    yield first_line, first
    for line, text in numbered:
        yield line, _json_object(text, line)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _json_object(text: str, line: int) -> dict:
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise IngestError(f"Line {line} is not valid JSON: {exc.msg} (at character "
                          f"{exc.colno:,}).", line=line) from None
    except (ValueError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise IngestError(f"Line {line} is not valid JSON: {reason}.", line=line) from None
    if not isinstance(obj, dict):
        raise IngestError(f"Line {line} is {json_kind(obj)}, not an object. Each line must be "
                          'one JSON object, like {"name": "Ada"}.', line=line)
    return obj
