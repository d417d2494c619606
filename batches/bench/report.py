"""One row per scenario, printed as a Markdown table (so it pastes into the README as is), and
the same rows as JSON under test-artifacts/.

A timed scenario runs several times (`--repeat`); `combine` keeps the run with the median
figure, shows the min-max of the figure beside it, and judges PASS/FAIL on the median. A
scenario that lost or failed rows in any run fails, whatever its figure.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HEADERS = ["#", "Scenario", "Rows", "Time (s)", "Rows/s", "Reference", "Ratio", "Measured",
           "Target", "Pass", "Peak RSS (MB)"]


@dataclass
class Row:
    number: int
    scenario: str
    rows: int | None = None
    seconds: float | None = None
    rate: float | None = None
    reference: str = ""
    ratio: float | None = None
    measured: str = ""
    target: str = ""
    passed: bool | None = None
    peak_rss_mb: float | None = None
    # For repeated runs: the figure the target judges, whether it meets it, and whether every
    # row of the run succeeded.
    figure: float | None = None
    meets: Callable[[float], bool] | None = field(default=None, repr=False)
    complete: bool = True
    runs: list[float] = field(default_factory=list)

    def cells(self) -> list[str]:
        return [
            str(self.number), self.scenario, _num(self.rows, "{:,}"), _num(self.seconds, "{:.1f}"),
            _num(self.rate, "{:,.0f}"), self.reference or "-", _num(self.ratio, "{:.2f}"),
            self.measured or "-", self.target or "-",
            {True: "PASS", False: "FAIL", None: "-"}[self.passed],
            _num(self.peak_rss_mb, "{:.0f}"),
        ]

    def as_json(self) -> dict:
        data = asdict(self)
        data.pop("meets")
        return data


def combine(runs: list[Row]) -> Row:
    """The median run of one scenario, with the range of its figure and a verdict on the
    median."""
    if len(runs) == 1 or any(r.figure is None for r in runs):
        row = runs[0]
        row.runs = [r.figure for r in runs if r.figure is not None]
        row.passed = all(r.passed for r in runs) if row.passed is not None else None
        return row
    ordered = sorted(runs, key=lambda r: r.figure)
    row = ordered[(len(ordered) - 1) // 2]
    figures = [r.figure for r in runs]
    median = statistics.median(figures)
    row.runs = figures
    row.measured += (f" [median of {len(runs)}: {median:.3g}; range {min(figures):.3g}-"
                     f"{max(figures):.3g}]")
    meets = row.meets(median) if row.meets else bool(row.passed)
    row.passed = meets and all(r.complete for r in runs)
    return row


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table(rows: list[Row]) -> str:
    lines = [HEADERS] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(HEADERS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(r.cells()) for r in rows]
    return "\n".join(out)


def write_json(rows: list[Row], path: Path, **context: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**context, "rows": [r.as_json() for r in rows]}, indent=2))
    return path
