"""The benchmark's scenarios (issue 7): the pipeline through a real qcluster against the fake
model server, each measured against a reference taken in the same run."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import InterfaceError, OperationalError, connection, transaction
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from batches import prompts, services
from batches.bench.load import Target, run_load
from batches.bench.procs import API_KEY, Cluster, FakeServer, RssSampler, WebServer, child_env
from batches.bench.reference import reference_seconds
from batches.bench.report import Row
from batches.models import Batch

BENCH_USER = "bench"
# A model name of its own keeps the benchmark's shared rate-limit buckets apart from real ones.
MODEL = "bench-model"
PROMPT = "Classify the sentiment of this review as positive, negative or neutral: {{text}}"
INGEST_PROMPT = "Summarise in one line: {{title}}. {{text}}"
ALL_SCENARIOS = (1, 2, 3, 4, 5, 6)
WORDS = ("good bad service fast slow price quality friendly staff room clean noisy food late "
         "early helpful rude cheap expensive view garden parking breakfast wifi quiet").split()


@dataclass
class Options:
    scenarios: tuple[int, ...] = ALL_SCENARIOS
    workers: int = 2
    scale: float = 1.0  # multiplies every row count; --quick uses a small one
    concurrency: int = 50  # overhead scenario, pipeline and reference alike
    load_seconds: float = 10.0
    load_clients: int = 20
    slice_inflight: int | None = None  # BATCH_SLICE_MAX_INFLIGHT of the cluster, if given
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

    def n(self, full: int, minimum: int = 20) -> int:
        return max(minimum, round(full * self.options.scale))

    def log(self, message: str) -> None:
        self.options.log(message)

    # Orchestration ---------------------------------------------------------------------------

    def run(self) -> list[Row]:
        wanted = set(self.options.scenarios)
        self.user = bench_user()
        refuse_if_others_active(self.user)
        delete_bench_batches(self.user)
        with ExitStack() as stack:
            stack.callback(delete_bench_batches, self.user)
            self.fake = FakeServer()
            stack.callback(self.fake.stop)
            self.log(f"fake model server on {self.fake.url}")
            self.cluster_rss = RssSampler().start()
            stack.callback(self.cluster_rss.close)
            if wanted & {1, 2, 3, 5, 6}:
                extra = ({"BATCH_SLICE_MAX_INFLIGHT": self.options.slice_inflight}
                         if self.options.slice_inflight else {})
                self.cluster = Cluster(self.fake.url, self.options.workers, **extra)
                stack.callback(self.cluster.stop)
                self.cluster_rss.watch(self.cluster.pid)
                self.log(f"qcluster started with {self.options.workers} workers")
                self.warm_up()
            if 1 in wanted:
                self.overhead()
            if wanted & {2, 6}:
                self.latency_bound(with_pages=6 in wanted, report_latency=2 in wanted)
            if 3 in wanted:
                self.rate_bound()
            if 5 in wanted:
                self.memory()
            if 4 in wanted:
                self.ingest()
        return sorted(self.rows, key=lambda r: r.number)

    def run_batch(self, rows: list[dict], *, concurrency: int, timeout: float,
                  rpm_limit: int | None = None, max_retries: int = 3,
                  during: Callable[[Batch], Any] | None = None) -> BatchRun:
        """Create a batch and wait for the cluster to finish it; time from the creating
        transaction's commit to the batch's finished_at. The batch is deleted afterwards."""
        committed: list = []
        self.cluster_rss.new_window()
        with transaction.atomic():
            # Registered first, so it runs before the service's own enqueue hook.
            transaction.on_commit(lambda: committed.append(timezone.now()))
            batch = services.batch_create(
                owner=self.user, prompt=PROMPT, rows=rows, name="bench", model=MODEL,
                concurrency=concurrency, max_retries=max_retries, rpm_limit=rpm_limit,
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

    def overhead(self) -> None:
        n, concurrency = self.n(5000), self.options.concurrency
        rows = make_rows(n)
        template = prompts.parse(PROMPT)
        self.fake.configure(latency_ms=0, jitter_ms=0, error_rate=0, rpm_limit=None)
        self.fake.reset()
        self.log(f"1. overhead: reference loop, {n} requests at concurrency {concurrency}")
        ref_s = reference_seconds(self.fake.url, API_KEY, MODEL,
                                  [template.render(r) for r in rows], concurrency)
        self.fake.reset()
        self.log(f"   reference {ref_s:.1f} s ({n / ref_s:.0f}/s); now the pipeline")
        run = self.run_batch(rows, concurrency=concurrency, timeout=max(120, ref_s * 20))
        requests = self.fake.stats()["total_requests"]
        rate, ref_rate = n / run.seconds, n / ref_s
        ratio = rate / ref_rate
        ok = run.counts["succeeded"] == n and not run.timed_out
        self.rows.append(Row(
            1, f"Overhead (latency 0, concurrency {concurrency})", n, run.seconds, rate,
            f"raw SDK loop {ref_rate:,.0f}/s", ratio,
            f"{ratio:.2f} x reference; {requests:,} requests" + _failures(run),
            ">= 0.80 x reference", ok and ratio >= 0.8, self.cluster_rss.window_mb,
        ))

    def latency_bound(self, *, with_pages: bool, report_latency: bool) -> None:
        n, concurrency, latency_s = self.n(3000), 100, 1.0
        ideal = math.ceil(n / concurrency) * latency_s
        self.fake.configure(latency_ms=latency_s * 1000, jitter_ms=0, error_rate=0,
                            rpm_limit=None)
        self.fake.reset()
        during = None
        if with_pages:
            web = WebServer()
            self.web_rss = RssSampler().start()
            self.web_rss.watch(web.pid)
            during = self._pages_load(web)
        self.log(f"2. latency-bound: {n} rows, latency 1 s, concurrency {concurrency}"
                 + (f"; 6. pages under load for {self.options.load_seconds:g} s" if with_pages
                    else ""))
        try:
            run = self.run_batch(make_rows(n), concurrency=concurrency, timeout=ideal * 5 + 60,
                                 during=during)
        finally:
            if with_pages:
                self.web_rss.close()
                web.stop()
        if report_latency:
            ok = run.counts["succeeded"] == n and not run.timed_out
            self.rows.append(Row(
                2, f"Latency-bound (1 s, concurrency {concurrency})", n, run.seconds,
                n / run.seconds, f"ideal {ideal:.1f} s", ideal / run.seconds,
                f"{run.seconds:.1f} s" + _failures(run), f"<= {ideal * 1.2:.1f} s",
                ok and run.seconds <= ideal * 1.2, self.cluster_rss.window_mb,
            ))
        if with_pages:
            self.rows.append(self._pages_row(run.during))

    def _pages_load(self, web: WebServer) -> Callable[[Batch], Any]:
        client = Client()
        client.force_login(self.user)
        name = settings.SESSION_COOKIE_NAME
        cookie = f"{name}={client.cookies[name].value}"
        token, _ = Token.objects.get_or_create(user=self.user)

        def load(batch: Batch) -> dict:
            targets = [
                Target("progress partial", f"/batches/{batch.pk}/progress/",
                       {"HX-Request": "true", "Cookie": cookie, "Host": "127.0.0.1"}),
                Target("API detail", f"/api/batches/{batch.pk}/",
                       {"Authorization": f"Token {token.key}", "Host": "127.0.0.1"}),
            ]
            # gunicorn's workers load the URLconf and templates on their first requests.
            run_load(web.port, targets, clients=4, seconds=0.5)
            return run_load(web.port, targets, clients=self.options.load_clients,
                            seconds=self.options.load_seconds)

        return load

    def _pages_row(self, results: dict | None) -> Row:
        if not results:
            return Row(6, "Pages under load", measured="no measurement", passed=False)
        parts, ok, total, worst = [], True, 0, 0.0
        for name, lat in results.items():
            p50, p95 = lat.percentile(50), lat.percentile(95)
            total += len(lat.ms) + lat.errors
            worst = max(worst, p95)
            parts.append(f"{name} p50 {p50:.0f} / p95 {p95:.0f} ms"
                         + (f", {lat.errors} errors {lat.statuses}" if lat.errors else ""))
            ok = ok and lat.errors == 0 and p95 < 150
        seconds = self.options.load_seconds
        return Row(6, f"Pages under load ({self.options.load_clients} clients, during 2)",
                   total, seconds, total / seconds, measured="; ".join(parts),
                   target="p95 < 150 ms", passed=ok and not math.isnan(worst),
                   peak_rss_mb=self.web_rss.window_mb)

    def rate_bound(self) -> None:
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
        ok = (run.counts["succeeded"] == n and not run.timed_out and per_min >= 0.95 * rpm
              and share < 0.01)
        self.rows.append(Row(
            3, f"Rate-bound ({rpm}/min, latency 200 ms)", n, run.seconds, n / run.seconds,
            f"limit {rpm}/min", per_min / rpm,
            f"{per_min:,.0f}/min; {too_many} of {requests:,} answered 429 ({share:.1%})"
            + _failures(run),
            ">= 95% of limit, < 1% 429", ok, self.cluster_rss.window_mb,
        ))

    def memory(self) -> None:
        peak = self.cluster_rss.overall_mb
        self.rows.append(Row(5, "Memory (every qcluster process, whole run)", measured=(
            f"{len(self.cluster_rss.peak_kb)} processes, max {peak:.0f} MB"),
            target="< 512 MB each", passed=0 < peak < 512, peak_rss_mb=peak))

    def ingest(self) -> None:
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
        self.rows.append(Row(
            4, f"Ingest ({size_mb:.0f} MB CSV via batch_create)", data["rows"], seconds,
            data["rows"] / seconds, "", None, f"{seconds:.1f} s, peak RSS {peak:.0f} MB",
            "< 20 s, < 300 MB", data["rows"] == n and seconds < 20 and peak < 300, peak,
        ))


def _refresh(batch: Batch) -> bool:
    """Reload the batch; False if the database connection dropped (it reconnects next time)."""
    try:
        batch.refresh_from_db()
    except (OperationalError, InterfaceError):
        connection.close()
        return False
    return True


def _failures(run: BatchRun) -> str:
    bad = {k: v for k, v in run.counts.items() if k != "succeeded" and v}
    text = f"; not succeeded: {bad}" if bad else ""
    return text + ("; TIMED OUT" if run.timed_out else "")


# Data ----------------------------------------------------------------------------------------

def make_rows(n: int) -> list[dict]:
    rng = random.Random(7)
    return [{"id": i, "text": f"Review {i}: " + " ".join(rng.choices(WORDS, k=14))}
            for i in range(n)]


def write_csv(path: str, n: int) -> None:
    """About 300 bytes a row: 100,000 rows make a 30 MB file."""
    rng = random.Random(11)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "title", "city", "text"])
        for i in range(n):
            writer.writerow([i, " ".join(rng.choices(WORDS, k=4)).title(),
                             rng.choice(("Lyon", "Porto", "Gdansk", "Leeds", "Turin")),
                             " ".join(rng.choices(WORDS, k=42))])


# The bench user --------------------------------------------------------------------------------

def bench_user():
    # Staff: the bench may run batches above the per-user concurrency cap.
    user, created = get_user_model().objects.get_or_create(username=BENCH_USER,
                                                           defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def refuse_if_others_active(user) -> None:
    """The bench's workers claim rows of any batch: never run them on other people's work."""
    others = Batch.objects.active().exclude(owner=user).count()
    if others:
        raise RuntimeError(
            f"This database has {others} active batches of other users; the benchmark's "
            "workers would send their rows to the fake model. Run it on a database of its "
            "own (DATABASE_URL)."
        )


def delete_bench_batches(user) -> None:
    connection.close_if_unusable_or_obsolete()
    for batch in Batch.objects.filter(owner=user):
        services.batch_delete(batch=batch)
