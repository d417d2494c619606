"""One row per scenario, printed as a Markdown table (so it pastes into the README as is)."""

from __future__ import annotations

from dataclasses import dataclass

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

    def cells(self) -> list[str]:
        return [
            str(self.number), self.scenario, _num(self.rows, "{:,}"), _num(self.seconds, "{:.1f}"),
            _num(self.rate, "{:,.0f}"), self.reference or "-", _num(self.ratio, "{:.2f}"),
            self.measured or "-", self.target or "-",
            {True: "PASS", False: "FAIL", None: "-"}[self.passed],
            _num(self.peak_rss_mb, "{:.0f}"),
        ]


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
