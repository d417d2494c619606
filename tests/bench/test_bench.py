"""`manage.py bench`: a smoke run with tiny row counts (not a timing test), and its guards."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from batches.bench.report import Row, combine, table
from batches.models import Batch

ROOT = Path(__file__).resolve().parents[2]


NAMES = {1: "Overhead", 2: "Latency-bound", 3: "Rate-bound", 4: "Ingest", 5: "Memory",
         6: "Pages under load", 7: "Exports", 8: "A million rows", 9: "Many small batches",
         10: "Batch mode: collect a results file"}
# Every scenario, in three runs that `make test` can run side by side.
GROUPS = [(1, 2, 3, 4, 5, 6), (7, 8), (9, 10)]


def test_the_smoke_runs_cover_every_scenario():
    assert sorted(n for group in GROUPS for n in group) == sorted(NAMES)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("group", GROUPS, ids=lambda g: ",".join(map(str, g)))
def test_a_quick_run_prints_one_table_and_loses_no_row(group, make_batch, user):
    mine = make_batch()
    mine.status = Batch.Status.COMPLETED
    mine.save(update_fields=["status"])
    out, err = io.StringIO(), io.StringIO()

    # Scenario 8 at 2,000 rows (its minimum): at --quick's scale it would run 20,000 rows, which
    # at latency 0 is minutes of CPU for the SDK alone, and proves nothing more.
    call_command("bench", "--quick", "--load-seconds", "1", "--million-rows", "100000",
                 "--scenarios", ",".join(map(str, group)), stdout=out, stderr=err)

    text = out.getvalue()
    numbers = re.findall(r"^\| (\d+) +\|", text, flags=re.MULTILINE)
    assert numbers == [str(n) for n in group], text + err.getvalue()
    for number in group:
        assert NAMES[number] in text
    assert re.search(r"\d+ cores, load average", text)
    # Every row ran: a pass/fail verdict on each (timing targets mean little at this scale).
    assert text.count("PASS") + text.count("FAIL") == len(group)
    # ... and no scenario lost or failed a row, whatever its timing: the JSON says so per row.
    written = re.search(r"table written to (\S+\.json)", err.getvalue()).group(1)
    report = json.loads(Path(written).read_text())
    assert [r["number"] for r in report["rows"]] == list(group)
    assert [r["number"] for r in report["rows"] if not r["complete"]] == [], text + err.getvalue()
    for row in report["rows"]:
        for key in ("seconds", "rate", "ratio", "figure"):
            assert row[key] is None or (isinstance(row[key], (int, float))
                                        and math.isfinite(row[key])), (row, key)
    by_number = {r["number"]: r for r in report["rows"]}
    if 6 in by_number:
        # A page that answered with an error, or a load that measured nothing, fails too.
        pages = by_number[6]["measured"]
        assert "errors" not in pages and "no measurement" not in pages, pages
    if 1 in by_number:
        assert "CPU/row" in text
    if 2 in by_number:
        assert "slot idle p50" in text
    # The bench user's batches are gone; another user's data is untouched.
    assert not Batch.objects.filter(owner__username="bench").exists()
    assert Batch.objects.filter(pk=mine.pk, owner=user).exists()


@pytest.mark.django_db
def test_it_refuses_to_run_where_other_users_have_active_batches(make_batch):
    make_batch()
    with pytest.raises(CommandError, match="active batches of other users"):
        call_command("bench", "--quick", "--scenarios", "1", stdout=io.StringIO(),
                     stderr=io.StringIO())


@pytest.mark.django_db
def test_it_rejects_unknown_scenarios():
    with pytest.raises(CommandError, match="Scenarios are"):
        call_command("bench", "--scenarios", "1,11")


def test_a_repeated_scenario_shows_its_median_run_and_is_judged_on_the_median():
    runs = [Row(2, "Latency-bound", seconds=s, measured=f"{s} s", figure=s,
                meets=lambda s: s <= 32.0, passed=s <= 32.0) for s in (31.0, 40.0, 30.5)]
    row = combine(runs)
    assert row.seconds == 31.0 and row.passed
    assert "median of 3: 31; range 30.5-40" in row.measured
    slow = combine([Row(2, "x", figure=s, meets=lambda s: s <= 32.0, passed=s <= 32.0)
                    for s in (31.0, 40.0, 33.0)])
    assert slow.passed is False


def test_a_run_that_lost_rows_fails_its_scenario_even_with_a_good_median():
    runs = [Row(1, "Overhead", figure=r, meets=lambda r: r >= 0.95, passed=r >= 0.95,
                complete=r != 1.1) for r in (1.0, 1.1, 1.2)]
    assert combine(runs).passed is False


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


def test_a_scenario_that_raises_is_a_failed_row_and_the_run_goes_on():
    from batches.bench.core import Bench, Options
    from batches.bench.scenarios import _guarded

    logged: list[str] = []
    bench = Bench(Options(log=logged.append))

    def broken() -> Row:
        raise RuntimeError("The batch mode child failed:\nTraceback ...")

    row = _guarded(bench, 10, broken)
    assert (row.number, row.passed, row.complete) == (10, False, False)
    assert row.scenario == "Batch mode: collect a results file"
    assert row.measured.startswith("ERROR RuntimeError: The batch mode child failed: Traceback")
    assert "10. failed" in logged[0]
    assert "| FAIL " in table([row])


@pytest.mark.django_db
def test_queued_engine_slices_are_dropped_and_other_tasks_kept():
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    from batches.bench.data import drop_queued_slices
    from batches.engine import tasks

    tasks.enqueue_slice(1)
    tasks.enqueue_slice(2)
    async_task("batches.engine.tasks.rescue")

    assert drop_queued_slices() == 2
    assert [task.func() for task in OrmQ.objects.all()] == ["batches.engine.tasks.rescue"]
    assert drop_queued_slices() == 0
