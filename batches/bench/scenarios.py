"""The benchmark's order of play: one fake model server and one qcluster for the whole run,
each timed scenario `--repeat` times, and one table row per scenario (the median run)."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.test import override_settings

from batches.bench import heavy, pages
from batches.bench.core import ALL_SCENARIOS, SCENARIO_NAMES, Bench, Options
from batches.bench.data import (
    bench_user,
    delete_bench_batches,
    drop_queued_slices,
    refuse_if_others_active,
)
from batches.bench.procs import Cluster, FakeServer, RssSampler
from batches.bench.report import Row, combine

__all__ = ["ALL_SCENARIOS", "Bench", "Options", "run"]

CLUSTER_SCENARIOS = {1, 2, 3, 5, 6, 8, 9}


def run(bench: Bench) -> list[Row]:
    wanted = set(bench.options.scenarios)
    bench.user = bench_user(staff=True)  # runs batches above the per-user concurrency cap
    refuse_if_others_active()
    delete_bench_batches()
    if dropped := drop_queued_slices():
        bench.log(f"dropped {dropped} engine slices an earlier run left queued")
    runs: dict[int, list[Row]] = defaultdict(list)
    with ExitStack() as stack:
        # The bench creates batches as fast as a script can; the per-user creation rate
        # (docs/security.md) is for people, and a few bench runs in an hour would reach it.
        stack.enter_context(override_settings(BATCH_CREATE_RATE=""))
        stack.callback(delete_bench_batches)
        bench.fake = FakeServer()
        stack.callback(bench.fake.stop)
        bench.log(f"fake model server on {bench.fake.url}")
        bench.cluster_rss = RssSampler().start()
        stack.callback(bench.cluster_rss.close)
        idle = tempfile.NamedTemporaryFile(prefix="bench-slot-idle-", delete=False)
        idle.close()
        bench.slot_idle_log = Path(idle.name)
        stack.callback(bench.slot_idle_log.unlink, missing_ok=True)
        if wanted & CLUSTER_SCENARIOS:
            extra: dict[str, Any] = {"BATCH_SLOT_IDLE_LOG": idle.name}
            if bench.options.slice_inflight:
                extra["BATCH_SLICE_MAX_INFLIGHT"] = bench.options.slice_inflight
            bench.cluster = Cluster(bench.fake.url, bench.options.workers, **extra)
            stack.callback(bench.cluster.stop)
            bench.cluster_rss.watch(bench.cluster.pid)
            bench.log(f"qcluster started with {bench.options.workers} workers")
            bench.warm_up()
        def play(number: int, scenario: Callable[[], Row]) -> None:
            if number in wanted:
                runs[number].append(_guarded(bench, number, scenario))

        for attempt in range(bench.options.repeat):
            if bench.options.repeat > 1:
                bench.log(f"-- run {attempt + 1} of {bench.options.repeat}")
            play(1, bench.overhead)
            play(2, bench.latency_bound)
            play(9, lambda: heavy.many_small_batches(bench))
            play(7, lambda: heavy.exports(bench))
            play(4, bench.ingest)
        # One run each: the rate limit sets 3's time, 6 is a 10 s load of its own, and 8 is
        # long by design.
        play(6, lambda: pages.pages_under_load(bench))
        play(3, bench.rate_bound)
        play(8, lambda: heavy.million_rows(bench))
        play(5, bench.memory)
        if 10 in wanted and bench.cluster is not None:
            # Scenario 10 measures its own child collecting a job; the cluster's batch-mode
            # schedule would otherwise submit and collect the same batch beside it.
            bench.cluster.stop()
        play(10, bench.batch_mode)
    return [combine(runs[number]) for number in sorted(runs)]


def _guarded(bench: Bench, number: int, scenario: Callable[[], Row]) -> Row:
    """Run one scenario; one that raises is a failed row of the table, not the end of the run
    (the other scenarios' figures are kept)."""
    try:
        return scenario()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # the table says what went wrong
        bench.log(f"{number}. failed: {type(exc).__name__}: {exc}")
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return Row(number, SCENARIO_NAMES.get(number, f"Scenario {number}"),
                   measured=f"ERROR {message}", passed=False, complete=False)
