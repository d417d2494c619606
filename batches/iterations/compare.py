"""Two batches' answers row by row (rows are matched by index), and the same as a CSV."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from batches.exports import STREAM_CHUNK, neutralise
from batches.models import Batch
from batches.prompts import format_value

READ_CHUNK = 2000
_FIELDS = ("index", "input", "status", "output", "cached")


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


def compared_rows(a: Batch, b: Batch) -> Iterator[ComparedRow]:
    """Every row index of either batch, in order, read in chunks of index ranges."""
    end = max(a.total_rows, b.total_rows, _last_index(a) + 1, _last_index(b) + 1)
    for start in range(0, end, READ_CHUNK):
        window = {"index__gte": start, "index__lt": start + READ_CHUNK}
        left = {r[0]: r for r in a.results.filter(**window).values_list(*_FIELDS)}
        right = {r[0]: r for r in b.results.filter(**window).values_list(*_FIELDS)}
        for index in sorted(left.keys() | right.keys()):
            ra, rb = left.get(index), right.get(index)
            a_output, b_output = (ra[3] if ra else ""), (rb[3] if rb else "")
            yield ComparedRow(
                index=index, input=(rb or ra)[1] if isinstance((rb or ra)[1], dict) else {},
                a_status=ra[2] if ra else None, a_output=a_output,
                b_status=rb[2] if rb else None, b_output=b_output,
                a_cached=bool(ra and ra[4]), b_cached=bool(rb and rb[4]),
                changed_fields=_changed_fields(a_output, b_output),
            )


def _last_index(batch: Batch) -> int:
    last = batch.results.order_by("-index").values_list("index", flat=True).first()
    return -1 if last is None else last


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
    result = Comparison(a=a, b=b)
    fields: Counter[str] = Counter()
    seen = 0
    for row in compared_rows(a, b):
        result.rows += 1
        if row.changed:
            result.changed += 1
            fields.update(row.changed_fields)
        if changed_only and not row.changed:
            continue
        if seen >= offset and (limit is None or len(result.page) < limit):
            result.page.append(row)
        seen += 1
    result.field_changes = dict(sorted(fields.items()))
    result.listed = seen
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
    for row in compared_rows(a, b):
        if changed_only and not row.changed:
            continue
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
