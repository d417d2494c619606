"""A small summary per output field, the kind of thing a person would make a pivot table for:
counts per value for one-of and boolean fields, min/median/max for numbers, first/last for
dates, the most frequent items of lists, and how many rows have a value."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from batches.outputs.fields import OutputField

TOP_ITEMS = 3


@dataclass
class FieldSummary:
    field: OutputField
    filled: int = 0
    # (value, count), most frequent first; enum values in their declared order, zeros included.
    counts: list[tuple[str, int]] = field(default_factory=list)
    minimum: float | None = None
    median: float | None = None
    maximum: float | None = None
    first: str | None = None
    last: str | None = None

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def largest_count(self) -> int:
        return max((n for _, n in self.counts), default=0)


def summarise(fields: list[OutputField], rows: Iterable[Any]) -> list[FieldSummary]:
    """Summaries of `rows` (each a row's `data` dict), one per field, in field order."""
    numbers: dict[str, list[float]] = {f.name: [] for f in fields if f.numeric}
    counters: dict[str, Counter] = {f.name: Counter() for f in fields if not f.numeric}
    filled: Counter = Counter()
    for data in rows:
        if not isinstance(data, dict):
            continue
        for f in fields:
            value = data.get(f.name)
            if value is None or value == "" or value == []:
                continue
            filled[f.name] += 1
            if f.numeric:
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    numbers[f.name].append(value)
            elif f.kind == "list" and isinstance(value, list):
                counters[f.name].update(_label(v) for v in value)
            elif f.kind in ("enum", "boolean", "date"):
                counters[f.name][_label(value)] += 1
    return [_summary(f, filled[f.name], numbers.get(f.name), counters.get(f.name))
            for f in fields]


def _summary(f: OutputField, filled: int, numbers: list[float] | None,
             counter: Counter | None) -> FieldSummary:
    summary = FieldSummary(f, filled)
    if numbers:
        summary.minimum, summary.maximum = min(numbers), max(numbers)
        summary.median = statistics.median(numbers)
    elif counter is not None:
        if f.kind == "enum":
            declared = [(v, counter.get(v, 0)) for v in f.values]
            others = [(v, n) for v, n in counter.most_common() if v not in f.values]
            summary.counts = declared + others
        elif f.kind == "boolean":
            summary.counts = [("true", counter.get("true", 0)), ("false", counter.get("false", 0))]
        elif f.kind == "list":
            summary.counts = counter.most_common(TOP_ITEMS)
        elif f.kind == "date" and counter:
            summary.first, summary.last = min(counter), max(counter)
    return summary


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
