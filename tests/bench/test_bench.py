"""`manage.py bench`: a smoke run with tiny row counts (not a timing test), and its guards."""

from __future__ import annotations

import io
import math
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from batches.bench.report import Row, table
from batches.models import Batch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_it_runs_every_scenario_and_prints_one_table(make_batch, user):
    mine = make_batch()
    mine.status = Batch.Status.COMPLETED
    mine.save(update_fields=["status"])
    out, err = io.StringIO(), io.StringIO()

    call_command("bench", "--quick", "--load-seconds", "1", stdout=out, stderr=err)

    text = out.getvalue()
    rows = table_rows(text)
    assert [row["#"] for row in rows] == ["1", "2", "3", "4", "5", "6"], text + err.getvalue()
    for row, name in zip(rows, ("Overhead", "Latency-bound", "Rate-bound", "Ingest", "Memory",
                                "Pages under load"), strict=True):
        assert row["Scenario"].startswith(name)
    assert re.search(r"\d+ cores, load average", text)
    # Timing targets may be missed in a quick run on a busy machine; lost or failed rows, a
    # timeout, a page error or a figure that is not a number may not.
    for row in rows:
        assert row["Pass"] in ("PASS", "FAIL"), row
        assert "not succeeded" not in row["Measured"], row
        assert "TIMED OUT" not in row["Measured"], row
        assert "errors" not in row["Measured"] and "no measurement" not in row["Measured"], row
        assert number(row["Peak RSS (MB)"]) > 0, row
        if row["#"] != "5":  # memory has no rows or time of its own
            assert number(row["Rows"]) > 0 and number(row["Time (s)"]) > 0, row
            assert number(row["Rows/s"]) > 0, row
        if row["#"] in ("1", "2", "3"):
            assert number(row["Ratio"]) > 0, row
    # The bench user's batches are gone; another user's data is untouched.
    assert not Batch.objects.filter(owner__username="bench").exists()
    assert Batch.objects.filter(pk=mine.pk, owner=user).exists()


def table_rows(text: str) -> list[dict[str, str]]:
    """The bench's Markdown table as one dict per scenario, keyed by the header."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split(" | ")),
                     strict=True)) for line in lines[1:]]


def number(cell: str) -> float:
    """A figure of the table; ValueError (the test fails) for '-', 'nan' or text."""
    value = float(cell.replace(",", ""))
    if math.isnan(value) or math.isinf(value):
        raise ValueError(cell)
    return value


def test_the_smoke_checks_catch_a_failed_scenario():
    failed = table([
        Row(1, "Overhead", 20, 1.0, 20.0, "ref", 0.5, "0.50 x reference; not succeeded: "
            "{'failed': 3}", ">= 0.80", False, 90.0),
        Row(2, "Latency-bound", 20, float("nan"), None, "", None, "", "", False, 90.0),
    ])
    rows = table_rows(failed)
    assert "not succeeded" in rows[0]["Measured"]
    with pytest.raises(ValueError):
        number(rows[1]["Time (s)"])
    with pytest.raises(ValueError):
        number(rows[1]["Rows/s"])


@pytest.mark.django_db
def test_it_refuses_to_run_where_other_users_have_active_batches(make_batch):
    make_batch()
    with pytest.raises(CommandError, match="active batches of other users"):
        call_command("bench", "--quick", "--scenarios", "1", stdout=io.StringIO(),
                     stderr=io.StringIO())


@pytest.mark.django_db
def test_it_rejects_unknown_scenarios():
    with pytest.raises(CommandError, match="Scenarios are"):
        call_command("bench", "--scenarios", "1,9")


def test_the_table_has_one_line_per_row_with_aligned_columns():
    text = table([Row(1, "Overhead", 5000, 40.0, 125.0, "raw SDK loop 150/s", 0.83,
                      "0.83 x reference", ">= 0.80 x reference", True, 110.4),
                  Row(5, "Memory", measured="6 processes", passed=False)])
    lines = text.splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1
    assert "| 5,000 " in lines[2] and "| PASS " in lines[2] and "| 110 " in lines[2]
    assert "| FAIL " in lines[3]


def test_make_bench_runs_the_command_with_bench_args():
    plan = subprocess.run(["make", "-n", "bench", "BENCH_ARGS=--quick"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    assert "manage.py bench --quick" in plan
