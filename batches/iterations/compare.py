"""Two batches' answers row by row (rows are matched by index), and the same as a CSV."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db.models import F, OuterRef, Q, Subquery

from batches.exports import STREAM_CHUNK, neutralise
from batches.models import Batch, BatchResult
from batches.prompts import format_value

READ_CHUNK = 2000


@dataclass(frozen=True)
class ComparedRow:
    index: int
    input: dict
    a_status: str | None  # None: the batch has no such row
    a_output: str
    b_status: str | None
    b_output: str
    a_cached: bool = False
    b_cached: bool = False
    changed_fields: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.a_output != self.b_output or self.a_status != self.b_status


@dataclass
class Comparison:
    a: Batch
    b: Batch
    rows: int = 0
    changed: int = 0
    # For JSON-object answers (structured output): how many rows changed each field.
    field_changes: dict[str, int] = field(default_factory=dict)
    page: list[ComparedRow] = field(default_factory=list)
    listed: int = 0  # rows the page's filter matches, for pagination

    @property
    def unchanged(self) -> int:
        return self.rows - self.changed


def _pairs(a: Batch, b: Batch):
    """B's rows, each with A's row of the same index beside it (indexes run 0..n-1)."""
    theirs = BatchResult.objects.filter(batch=a, index=OuterRef("index"))
    return (b.results.order_by("index")
            .annotate(a_status=Subquery(theirs.values("status")[:1]),
                      a_output=Subquery(theirs.values("output")[:1]),
                      a_cached=Subquery(theirs.values("cached")[:1]))
            .values_list("index", "input", "status", "output", "cached", "a_status", "a_output",
                         "a_cached"))


# The answer differs, or the status does, or A has no such row. Compared in the database, so a
# page or a count never reads every row's text into Python.
_CHANGED = Q(a_status__isnull=True) | ~Q(status=F("a_status")) | ~Q(output=F("a_output"))


def _only_in_a(a: Batch, b: Batch):
    return (a.results.filter(index__gte=b.total_rows).order_by("index")
            .values_list("index", "input", "status", "output", "cached"))


def _from_pair(row: tuple) -> ComparedRow:
    index, input_, b_status, b_output, b_cached, a_status, a_output, a_cached = row
    a_output = a_output or ""
    return ComparedRow(index=index, input=input_ if isinstance(input_, dict) else {},
                       a_status=a_status, a_output=a_output, b_status=b_status,
                       b_output=b_output, a_cached=bool(a_cached), b_cached=bool(b_cached),
                       changed_fields=_changed_fields(a_output, b_output))


def _from_a_only(row: tuple) -> ComparedRow:
    index, input_, status, output, cached = row
    return ComparedRow(index=index, input=input_ if isinstance(input_, dict) else {},
                       a_status=status, a_output=output, b_status=None, b_output="",
                       a_cached=bool(cached))


def compared_rows(a: Batch, b: Batch, *, changed_only: bool = False) -> Iterator[ComparedRow]:
    """Every row index of either batch in order (only changed ones if asked), streamed."""
    pairs = _pairs(a, b).filter(_CHANGED) if changed_only else _pairs(a, b)
    for row in pairs.iterator(chunk_size=READ_CHUNK):
        yield _from_pair(row)
    for row in _only_in_a(a, b).iterator(chunk_size=READ_CHUNK):
        yield _from_a_only(row)


def _as_object(text: str) -> dict | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _changed_fields(a: str, b: str) -> tuple[str, ...]:
    if a == b:
        return ()
    left, right = _as_object(a), _as_object(b)
    if left is None or right is None:
        return ()
    return tuple(sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k)))


def compare_batches(a: Batch, b: Batch, *, changed_only: bool = False, offset: int = 0,
                    limit: int | None = 50) -> Comparison:
    """The summary over all rows, and one page of rows (only changed ones if asked)."""
    only_a = _only_in_a(a, b).count()
    pairs = _pairs(a, b)
    changed_pairs = pairs.filter(_CHANGED)
    result = Comparison(a=a, b=b, rows=pairs.count() + only_a)
    result.changed = changed_pairs.count() + only_a
    # Field counts need the answers parsed, but only of the rows that changed.
    fields: Counter[str] = Counter()
    for _, _, _, b_output, _, _, a_output, _ in changed_pairs.iterator(chunk_size=READ_CHUNK):
        fields.update(_changed_fields(a_output or "", b_output))
    result.field_changes = dict(sorted(fields.items()))
    listed = changed_pairs if changed_only else pairs
    in_b = result.changed - only_a if changed_only else result.rows - only_a
    result.listed = in_b + only_a
    end = None if limit is None else offset + limit
    result.page = [_from_pair(r) for r in listed[offset:end]] if offset < in_b else []
    if end is None or end > in_b:
        rest = _only_in_a(a, b)[max(0, offset - in_b):None if end is None else end - in_b]
        result.page += [_from_a_only(r) for r in rest]
    return result


def compare_csv(a: Batch, b: Batch, *, changed_only: bool = False) -> Iterator[bytes]:
    """One CSV row per row index: the inputs, then both answers. Formula-safe like exports."""
    columns = list(dict.fromkeys([*b.columns, *a.columns]))
    header = ["index", *columns, "status_a", "output_a", "status_b", "output_b", "changed",
              "changed_fields"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow([neutralise(h) for h in header])
    for row in compared_rows(a, b, changed_only=changed_only):
        cells = [row.index, *(_cell(row.input.get(c)) for c in columns),
                 row.a_status or "", _cell(row.a_output), row.b_status or "",
                 _cell(row.b_output), "yes" if row.changed else "no",
                 " ".join(row.changed_fields)]
        writer.writerow(cells)
        if buffer.tell() >= STREAM_CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _cell(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return neutralise(format_value(value))
