"""The benchmark's core: options, the Bench that creates a batch and waits for the cluster to
finish it, and scenarios 1-5 (overhead, latency-bound, rate-bound, ingest, memory). The page
load (6) is in pages.py, exports, a million rows and many small batches (7-9) in heavy.py, and
scenarios.py runs them in order."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from batches import prompts, services
from batches.bench.data import (
    make_rows,
    write_csv,
)
from batches.bench.procs import API_KEY, Cluster, FakeServer, RssSampler, child_env, cpu_seconds
from batches.bench.reference import reference_processes
from batches.bench.report import Row
from batches.models import Batch

# A model name of its own keeps the benchmark's shared rate-limit buckets apart from real ones.
MODEL = "bench-model"
PROMPT = "Classify the sentiment of this review as positive, negative or neutral: {{text}}"
INGEST_PROMPT = "Summarise in one line: {{title}}. {{text}}"
ALL_SCENARIOS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
SCENARIO_NAMES = {1: "Overhead", 2: "Latency-bound", 3: "Rate-bound", 4: "Ingest", 5: "Memory",
                  6: "Pages under load", 7: "Exports", 8: "A million rows",
                  9: "Many small batches", 10: "Batch mode: collect a results file"}


@dataclass
class Options:
    scenarios: tuple[int, ...] = ALL_SCENARIOS
    workers: int = 2
    scale: float = 1.0  # multiplies every row count; --quick uses a small one
    concurrency: int = 50  # overhead scenario, pipeline and reference alike
    load_seconds: float = 10.0
    load_clients: int = 20
    slice_inflight: int | None = None  # BATCH_SLICE_MAX_INFLIGHT of the cluster, if given
    repeat: int = 3  # timed scenarios run this many times; the table shows the median
    million_rows: int = 1_000_000  # scenario 8's batch (scaled like every row count)
    log: Callable[[str], None] = print


@dataclass
class BatchRun:
    seconds: float
    counts: dict[str, int]
    status: str
    during: Any = None
    timed_out: bool = False


@dataclass
class Bench:
    options: Options
    rows: list[Row] = field(default_factory=list)
    # Set by scenarios.run_all while it starts the run's child processes.
    fake: FakeServer | None = None
    cluster: Cluster | None = None  # only when a scenario needs the qcluster
    cluster_rss: RssSampler | None = None
    slot_idle_log: Path | None = None

    def n(self, full: int, minimum: int = 20) -> int:
        return max(minimum, round(full * self.options.scale))

    def log(self, message: str) -> None:
        self.options.log(message)

    # Orchestration ---------------------------------------------------------------------------

    def batch_env(self) -> dict[str, str]:
        return child_env(GEMINI_BASE_URL=self.fake.url, GEMINI_API_KEY=API_KEY)

    def slot_idle(self) -> tuple[float, float, int]:
        """p50 and p95 (ms) of the slot idle times the slices logged since the last call."""
        samples: list[float] = []
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 1.0:  # slices append when they end
            size = self.slot_idle_log.stat().st_size
            if size != last:
                last, stable_since = size, time.monotonic()
            time.sleep(0.2)
        for line in self.slot_idle_log.read_text().splitlines():
            samples.extend(json.loads(line))
        self.slot_idle_log.write_text("")
        if len(samples) < 2:
            return math.nan, math.nan, len(samples)
        q = statistics.quantiles(samples, n=100, method="inclusive")
        return q[49], q[94], len(samples)

    def run_batch(self, rows: list[dict], *, concurrency: int, timeout: float,
                  rpm_limit: int | None = None, max_retries: int = 3,
                  during: Callable[[Batch], Any] | None = None, owner=None) -> BatchRun:
        """Create a batch and wait for the cluster to finish it; time from the creating
        transaction's commit to the batch's finished_at. The batch is deleted afterwards."""
        committed: list = []
        self.cluster_rss.new_window()
        with transaction.atomic():
            # Registered first, so it runs before the service's own enqueue hook.
            transaction.on_commit(lambda: committed.append(timezone.now()))
            batch = services.batch_create(
                owner=owner or self.user, prompt=PROMPT, rows=rows, name="bench", model=MODEL,
                concurrency=concurrency, max_retries=max_retries, rpm_limit=rpm_limit,
                use_cache=False,  # scenarios reuse the same rows: every row must reach the model
            )
        side: list = []
        thread = None
        if during is not None:
            thread = threading.Thread(target=lambda: side.append(during(batch)), daemon=True)
            thread.start()
        deadline = time.monotonic() + timeout
        timed_out = False
        while True:
            if not _refresh(batch):
                time.sleep(0.5)
                continue
            if batch.is_finished:
                break
            if time.monotonic() > deadline:
                timed_out = True
                services.batch_cancel(batch=batch)
                batch.refresh_from_db()
                break
            time.sleep(0.1)
        if thread is not None:
            thread.join()
        end = batch.finished_at or timezone.now()
        run = BatchRun(seconds=(end - committed[0]).total_seconds(), counts=batch.status_counts(),
                       status=batch.status, during=side[0] if side else None,
                       timed_out=timed_out)
        services.batch_delete(batch=batch)
        return run

    def warm_up(self) -> None:
        """A first small batch, untimed: each worker imports the engine and google-genai (about
        a second each) on its first slice, which no later batch pays again."""
        self.fake.configure(latency_ms=0, jitter_ms=0, error_rate=0, rpm_limit=None)
        self.run_batch(make_rows(20 * self.options.workers), concurrency=4, timeout=120)

    # Scenarios -------------------------------------------------------------------------------

    def overhead(self) -> Row:
        n, concurrency, workers = self.n(5000), self.options.concurrency, self.options.workers
        rows = make_rows(n)
        template = prompts.parse(PROMPT)
        self.fake.configure(latency_ms=0, jitter_ms=0, error_rate=0, rpm_limit=None)
        self.fake.reset()
        self.log(f"1. overhead: reference in {workers} processes at {concurrency // workers} "
                 f"each, {n} requests")
        ref = reference_processes(self.fake.url, API_KEY, MODEL,
                                  [template.render(r) for r in rows], concurrency, workers,
                                  child_env())
        self.fake.reset()
        self.log(f"   reference {ref.seconds:.1f} s ({n / ref.seconds:.0f}/s); now the pipeline")
        cpu_before = cpu_seconds(self.cluster.pid)
        run = self.run_batch(rows, concurrency=concurrency, timeout=max(120, ref.seconds * 20))
        cpu_ms = (cpu_seconds(self.cluster.pid) - cpu_before) / n * 1000
        requests = self.fake.stats()["total_requests"]
        rate, ref_rate = n / run.seconds, n / ref.seconds
        ratio = rate / ref_rate
        complete = run.counts["succeeded"] == n and not run.timed_out
        return Row(
            1, f"Overhead (latency 0, concurrency {concurrency})", n, run.seconds, rate,
            f"{workers} SDK loops {ref_rate:,.0f}/s", ratio,
            f"{ratio:.2f} x reference; CPU/row {cpu_ms:.2f} ms vs reference "
            f"{ref.cpu_s_per_row * 1000:.2f} ms; {requests:,} requests" + failures(run),
            f">= 0.95 x {workers}-process reference", complete and ratio >= 0.95,
            self.cluster_rss.window_mb, figure=ratio, meets=lambda r: r >= 0.95,
            complete=complete,
        )

    def latency_bound(self, *, during: Callable[[Batch], Any] | None = None,
                      limit_s: float = 32.0) -> Row:
        n, concurrency, latency_s = self.n(3000), 100, 1.0
        ideal = math.ceil(n / concurrency) * latency_s
        limit_s = limit_s * ideal / 30.0  # the targets are for 3,000 rows; scaled with them
        self.fake.configure(latency_ms=latency_s * 1000, jitter_ms=0, error_rate=0,
                            rpm_limit=None)
        self.fake.reset()
        self.slot_idle()  # forget earlier scenarios' samples
        self.log(f"2. latency-bound: {n} rows, latency 1 s, concurrency {concurrency}"
                 + (" (with the page load beside it)" if during else ""))
        run = self.run_batch(make_rows(n), concurrency=concurrency, timeout=ideal * 5 + 60,
                             during=during)
        p50, p95, count = self.slot_idle()
        complete = run.counts["succeeded"] == n and not run.timed_out
        self.last_run = run
        return Row(
            2, f"Latency-bound (1 s, concurrency {concurrency})", n, run.seconds,
            n / run.seconds, f"ideal {ideal:.1f} s", ideal / run.seconds,
            f"{run.seconds:.1f} s; slot idle p50 {p50:.0f} / p95 {p95:.0f} ms "
            f"({count:,} refills)" + failures(run), f"<= {limit_s:.1f} s",
            complete and run.seconds <= limit_s, self.cluster_rss.window_mb,
            figure=run.seconds, meets=lambda s: s <= limit_s, complete=complete,
        )

    def rate_bound(self) -> Row:
        n, rpm = self.n(3000), 1200
        self.fake.configure(latency_ms=200, jitter_ms=0, error_rate=0, rpm_limit=rpm,
                            rpm_window_s=60.0)
        self.fake.reset()
        self.log(f"3. rate-bound: {n} rows at {rpm}/min (about {n / rpm:.1f} min)")
        run = self.run_batch(make_rows(n), concurrency=50, rpm_limit=rpm, max_retries=10,
                             timeout=n / rpm * 60 * 3 + 60)
        stats = self.fake.stats()
        self.fake.configure(rpm_limit=None)
        requests = stats["total_requests"]
        too_many = stats["by_status"].get("429", 0)
        share = too_many / requests if requests else 1.0
        per_min = n / run.seconds * 60
        complete = run.counts["succeeded"] == n and not run.timed_out
        ok = complete and per_min >= 0.95 * rpm and share < 0.01
        return Row(
            3, f"Rate-bound ({rpm}/min, latency 200 ms)", n, run.seconds, n / run.seconds,
            f"limit {rpm}/min", per_min / rpm,
            f"{per_min:,.0f}/min; {too_many} of {requests:,} answered 429 ({share:.1%})"
            + failures(run),
            ">= 95% of limit, < 1% 429", ok, self.cluster_rss.window_mb, complete=complete,
        )

    def memory(self) -> Row:
        peak = self.cluster_rss.overall_mb
        return Row(5, "Memory (every qcluster process, whole run)", measured=(
            f"{len(self.cluster_rss.peak_kb)} processes, max {peak:.0f} MB"),
            target="< 512 MB each", passed=0 < peak < 512, peak_rss_mb=peak)

    def ingest(self) -> Row:
        n = self.n(100_000, minimum=100)
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            path = os.path.join(tmp, "ingest.csv")
            write_csv(path, n)
            size_mb = os.path.getsize(path) / 1e6
            self.log(f"4. ingest: {n:,} rows, {size_mb:.1f} MB CSV, in a child process")
            result = subprocess.run(
                [sys.executable, "-m", "batches.bench.ingest_child", path, str(self.user.pk),
                 INGEST_PROMPT],
                cwd=settings.BASE_DIR, env=child_env(), capture_output=True, text=True,
                timeout=600,
            )
        if result.returncode != 0:
            raise RuntimeError(f"The ingest child failed:\n{result.stderr[-3000:]}")
        data = json.loads(result.stdout.strip().splitlines()[-1])
        Batch.objects.filter(pk=data["batch_id"], owner=self.user).delete()
        seconds, peak = data["seconds"], data["peak_rss_mb"]
        complete = data["rows"] == n
        return Row(
            4, f"Ingest ({size_mb:.0f} MB CSV via batch_create)", data["rows"], seconds,
            data["rows"] / seconds, "", None, f"{seconds:.1f} s, peak RSS {peak:.0f} MB",
            "< 20 s, < 300 MB", complete and seconds < 20 and peak < 300, peak,
            figure=seconds, meets=lambda s: s < 20 and peak < 300, complete=complete,
        )


    def batch_mode(self) -> Row:
        """10. A Batch Mode job's 100,000-row results file collected in a child process."""
        n = self.n(100_000, minimum=1000)
        self.log(f"10. batch mode: a {n:,}-row job's results file, collected in a child process")
        result = subprocess.run(
            [sys.executable, "-m", "batches.bench.batchmode_child", str(self.user.pk), str(n)],
            cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=1800,
            env=child_env(GEMINI_BASE_URL=self.fake.url, GEMINI_API_KEY="bench-key",
                          BATCH_MODE_INLINE_BYTES=0))
        if result.returncode != 0:
            raise RuntimeError(f"The batch mode child failed:\n{result.stderr[-3000:]}")
        data = json.loads(result.stdout.strip().splitlines()[-1])
        Batch.objects.filter(pk=data["batch_id"], owner=self.user).delete()
        seconds, peak = data["seconds"], data["peak_rss_mb"]
        complete = data["rows"] == n
        return Row(
            10, "Batch mode: collect a results file", data["rows"], seconds,
            data["rows"] / seconds, "", None,
            f"{seconds:.1f} s, RSS {data['rss_before_mb']:.0f} MB before, peak {peak:.0f} MB",
            "peak < 300 MB", complete and peak < 300, peak, figure=peak,
            meets=lambda p: p < 300, complete=complete,
        )


def _refresh(batch: Batch) -> bool:
    """Reload the batch; False if the database connection dropped (it reconnects next time)."""
    try:
        batch.refresh_from_db()
    except (OperationalError, InterfaceError):
        connection.close()
        return False
    return True


def failures(run: BatchRun) -> str:
    bad = {k: v for k, v in run.counts.items() if k != "succeeded" and v}
    text = f"; not succeeded: {bad}" if bad else ""
    return text + ("; TIMED OUT" if run.timed_out else "")
