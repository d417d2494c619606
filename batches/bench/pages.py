"""Scenario 6: pages under load while a latency-bound batch runs beside them.

Twenty closed-loop clients cycle through the light endpoints (progress partial, API detail)
and the heavy ones: the batch page with a 50-row results page, the dashboard of a user with 200
batches, the API results list, and the admin changelist of results on a table holding a million
rows (scaled with --quick)."""

from __future__ import annotations

import math

from rest_framework.authtoken.models import Token

from batches.bench.core import Bench
from batches.bench.data import bench_user, finished_batch, session_cookie
from batches.bench.load import Target, run_load
from batches.bench.procs import RssSampler, WebServer
from batches.bench.report import Row
from batches.models import Batch

DASHBOARD_BATCHES = 200
TABLE_ROWS = 1_000_000
P95_MS = 150


def pages_under_load(bench: Bench) -> Row:
    dash_user, admin_user = bench_user("-dash"), bench_user("-admin", staff=True)
    n_batches = bench.n(DASHBOARD_BATCHES, minimum=30)
    have = Batch.objects.filter(owner=dash_user).count()
    for i in range(have, n_batches):
        finished_batch(dash_user, 5, name=f"dashboard batch {i}")
    padding = bench.n(TABLE_ROWS, minimum=10_000)
    bench.log(f"6. pages: {n_batches} batches on one dashboard; padding the results table "
              f"with a finished batch of {padding:,} rows")
    finished_batch(admin_user, padding, name="results table padding")
    web = WebServer()
    web_rss = RssSampler().start()
    web_rss.watch(web.pid)
    mine, dash, staff = (session_cookie(u) for u in (bench.user, dash_user, admin_user))
    token, _ = Token.objects.get_or_create(user=bench.user)
    host = {"Host": "127.0.0.1"}

    def load(batch: Batch) -> dict:
        api = {"Authorization": f"Token {token.key}", **host}
        targets = [
            Target("progress partial", f"/batches/{batch.pk}/progress/",
                   {"HX-Request": "true", "Cookie": mine, **host}),
            Target("API detail", f"/api/batches/{batch.pk}/", api),
            Target("batch page (50 results)", f"/batches/{batch.pk}/", {"Cookie": mine, **host}),
            Target(f"dashboard ({n_batches} batches)", "/", {"Cookie": dash, **host}),
            Target("API results list", f"/api/batches/{batch.pk}/results/", api),
            Target(f"admin results ({padding:,} rows)", "/admin/batches/batchresult/",
                   {"Cookie": staff, **host}),
        ]
        run_load(web.port, targets, clients=4, seconds=1.0)  # workers load templates first
        return run_load(web.port, targets, clients=bench.options.load_clients,
                        seconds=bench.options.load_seconds)

    try:
        beside = bench.latency_bound(during=load, limit_s=33.5)
    finally:
        web_rss.close()
        web.stop()
    return _row(bench, bench.last_run.during, beside, web_rss.window_mb)


def _row(bench: Bench, results: dict | None, beside: Row, rss_mb: float) -> Row:
    clients = bench.options.load_clients
    if not results:
        return Row(6, "Pages under load", measured="no measurement", passed=False)
    parts, ok, total, worst = [], True, 0, 0.0
    for name, lat in results.items():
        p50, p95 = lat.percentile(50), lat.percentile(95)
        total += len(lat.ms) + lat.errors
        worst = max(worst, p95)
        parts.append(f"{name} p50 {p50:.0f} / p95 {p95:.0f} ms"
                     + (f", {lat.errors} errors {lat.statuses}" if lat.errors else ""))
        ok = ok and lat.errors == 0 and p95 < P95_MS
    parts.append(f"batch beside: {beside.seconds:.1f} s ({beside.target}, "
                 f"{'met' if beside.passed else 'MISSED'})")
    seconds = bench.options.load_seconds
    return Row(6, f"Pages under load ({clients} clients, beside 2)", total, seconds,
               total / seconds, measured="; ".join(parts),
               target=f"p95 < {P95_MS} ms each; batch {beside.target}",
               passed=ok and bool(beside.passed) and not math.isnan(worst), peak_rss_mb=rss_mb)
