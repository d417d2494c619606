"""`manage.py bench`: a smoke run with tiny row counts (not a timing test), and its guards."""

from __future__ import annotations

import io
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
    numbers = re.findall(r"^\| (\d) \|", text, flags=re.MULTILINE)
    assert numbers == ["1", "2", "3", "4", "5", "6"], text + err.getvalue()
    for name in ("Overhead", "Latency-bound", "Rate-bound", "Ingest", "Memory",
                 "Pages under load"):
        assert name in text
    assert re.search(r"\d+ cores, load average", text)
    # Every row ran: a number of rows and a pass/fail verdict on each.
    assert text.count("PASS") + text.count("FAIL") == 6
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
