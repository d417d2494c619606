"""Scenarios 7-9: exports of a 200,000-row batch, a million-row batch through the API, and many
small batches from many users at once."""

from __future__ import annotations

import http.client
import math
import os
import tempfile
import threading
import time
import uuid

from django.db import close_old_connections
from django.utils import timezone
from rest_framework.authtoken.models import Token

from batches import services
from batches.bench.core import Bench
from batches.bench.data import (
    bench_user,
    drop_queued_slices,
    finished_batch,
    make_rows,
    session_cookie,
    table_sizes,
)
from batches.bench.load import Latencies, Target, run_load
from batches.bench.procs import RssSampler, WebServer, group_members, rss_kb
from batches.bench.report import Row
from batches.models import Batch, BatchResult

EXPORT_ROWS = 200_000
STREAM_FIRST_BYTE_S = 1.0
STREAM_ROWS_PER_S = 50_000
STREAM_RSS_GROWTH_MB = 100
XLSX_MAX_S = 10.0


# 7. Exports ---------------------------------------------------------------------------------

def _get(port: int, path: str, headers: dict) -> tuple[int, float, float, int]:
    """Status, seconds to the first byte of the body, seconds in all, bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    first = response.read(1)
    first_s = time.perf_counter() - started
    size = len(first)
    while chunk := response.read(256 * 1024):
        size += len(chunk)
    total_s = time.perf_counter() - started
    conn.close()
    return response.status, first_s, total_s, size


def exports(bench: Bench) -> Row:
    n = bench.n(EXPORT_ROWS, minimum=2000)
    batch = getattr(bench, "export_batch", None)
    if batch is None:
        bench.log(f"7. exports: making a finished batch of {n:,} rows")
        batch = bench.export_batch = finished_batch(bench.user, n, name="export")
    web = WebServer(workers=1)
    rss = RssSampler(interval=0.05).start()
    rss.watch(web.pid)
    token, _ = Token.objects.get_or_create(user=bench.user)
    headers = {"Authorization": f"Token {token.key}", "Host": "127.0.0.1"}
    # served: every export answered 200 (the row is complete); stream_ok: and met its targets.
    figures, parts, stream_ok, served = {}, [], True, True
    try:
        _get(web.port, f"/api/batches/{batch.pk}/", headers)  # the worker loads the app
        for fmt in ("csv", "jsonl", "xlsx"):
            base = max((rss_kb(p) for p in group_members(web.pid)), default=0)
            rss.new_window()
            status, first_s, total_s, size = _get(
                web.port, f"/api/batches/{batch.pk}/export/?format={fmt}", headers)
            rss.sample()
            growth = max(0.0, (rss.window_kb - base) / 1024)
            rate = n / total_s
            figures[fmt] = total_s
            parts.append(f"{fmt.upper()} first byte {first_s:.2f} s, {total_s:.1f} s "
                         f"({rate:,.0f} rows/s, {size / 1e6:.0f} MB), RSS +{growth:.0f} MB"
                         + ("" if status == 200 else f", HTTP {status}"))
            if status != 200:
                stream_ok = served = False
            if fmt != "xlsx":
                stream_ok = stream_ok and (first_s < STREAM_FIRST_BYTE_S
                                           and rate >= STREAM_ROWS_PER_S
                                           and growth < STREAM_RSS_GROWTH_MB)
    finally:
        rss.close()
        web.stop()
    xlsx_s = figures.get("xlsx", math.inf)
    return Row(
        7, "Exports of a finished batch (gunicorn, timeout 30 s)", n, xlsx_s, n / xlsx_s,
        "", None, "; ".join(parts),
        f"CSV/JSONL first byte < {STREAM_FIRST_BYTE_S:g} s, >= {STREAM_ROWS_PER_S:,} rows/s, "
        f"RSS < +{STREAM_RSS_GROWTH_MB} MB; XLSX <= {XLSX_MAX_S:g} s",
        stream_ok and xlsx_s <= XLSX_MAX_S, rss.window_mb,
        figure=xlsx_s, meets=lambda s: stream_ok and s <= XLSX_MAX_S, complete=served,
    )


# 8. A million rows ----------------------------------------------------------------------------

def _multipart(path: str, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    with open(path, "rb") as f:
        data = f.read()
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="million.csv"\r\nContent-Type: text/csv\r\n\r\n'.encode()
                 + data + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def million_rows(bench: Bench) -> Row:
    n = bench.n(bench.options.million_rows, minimum=2000)
    window = max(1, min(100_000, n // 10))
    bench.fake.configure(latency_ms=0, jitter_ms=0, error_rate=0, rpm_limit=None)
    with tempfile.TemporaryDirectory(prefix="bench-million-") as tmp:
        path = os.path.join(tmp, "million.csv")
        with open(path, "w") as f:
            f.write("id,text\n")
            for row in make_rows(n, seed=3):
                f.write(f"{row['id']},{row['text']}\n")
        size_mb = os.path.getsize(path) / 1e6
        bench.log(f"8. a million rows: {n:,} rows ({size_mb:.0f} MB CSV) through the API")
        web = WebServer(workers=2, timeout=180, BATCH_MAX_ROWS=max(n, 200_000),
                        BATCH_MAX_UPLOAD_MB=max(50, int(size_mb * 2)), BATCH_MAX_CELLS=n * 4,
                        GEMINI_MODELS="bench-model")
        token, _ = Token.objects.get_or_create(user=bench.user)
        body, content_type = _multipart(path, {
            "prompt": "Classify: {{text}}", "name": "million", "model": "bench-model",
            "concurrency": "200", "use_cache": "false"})  # repeats must reach the model
    try:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=600)
        started = time.perf_counter()
        conn.request("POST", "/api/batches/", body=body, headers={
            "Authorization": f"Token {token.key}", "Content-Type": content_type,
            "Host": "127.0.0.1"})
        response = conn.getresponse()
        answer = response.read()
        ingest_s = time.perf_counter() - started
        if response.status != 201:
            raise RuntimeError(f"Creating the million-row batch answered {response.status}: "
                               f"{answer[:500]!r}")
        batch = Batch.objects.filter(owner=bench.user, name="million").latest("created_at")
        progress, rates = _watch(bench, web, batch, n, window)
    finally:
        web.stop()
    batch.refresh_from_db()
    complete = batch.succeeded_count == n
    first, last = rates
    steady = last / first if first else 0.0
    p95 = progress.percentile(95)
    ok = complete and ingest_s <= 60 and steady >= 0.9 and p95 < 150
    row = Row(
        8, "A million rows (API upload, latency 0, concurrency 200)", n, ingest_s, None,
        f"first {window:,} rows {first:,.0f}/s", steady,
        f"ingest {ingest_s:.1f} s; last {window:,} rows {last:,.0f}/s ({steady:.2f} x first); "
        f"progress p95 {p95:.0f} ms over {len(progress.ms):,} polls; {table_sizes()}"
        + ("" if complete else f"; only {batch.succeeded_count:,} succeeded"),
        "ingest <= 60 s; last/first >= 0.90; progress p95 < 150 ms", ok,
        bench.cluster_rss.window_mb, complete=complete,
    )
    services.batch_delete(batch=batch)
    return row


def _watch(bench: Bench, web: WebServer, batch: Batch, n: int,
           window: int) -> tuple[Latencies, tuple[float, float]]:
    """Poll the progress partial from two clients and sample the succeeded count each second
    until the batch ends; rows/s over the first and the last `window` rows."""
    cookie = session_cookie(bench.user)
    target = Target("progress", f"/batches/{batch.pk}/progress/",
                    {"HX-Request": "true", "Cookie": cookie, "Host": "127.0.0.1"})
    progress = Latencies()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            result = run_load(web.port, [target], clients=2, seconds=5)["progress"]
            progress.ms.extend(result.ms)
            progress.errors += result.errors

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + max(600, n / 50)
    try:
        while time.monotonic() < deadline:
            close_old_connections()
            batch.refresh_from_db()
            counts = batch.status_counts()  # the batch's own counters are written at the end
            done_rows = counts["succeeded"] + counts["failed"]
            if not samples and done_rows and batch.started_at:
                # Rows ran before the first sample (while the upload's response was on its
                # way): the count was 0 when the first was claimed.
                ago = time.time() - batch.started_at.timestamp()
                samples.append((time.monotonic() - ago, 0))
            samples.append((time.monotonic(), done_rows))
            if batch.is_finished:
                break
            time.sleep(1.0)
    finally:
        done.set()
        thread.join()
    return progress, (_rate_between(samples, 0, window), _rate_between(samples, n - window, n))


def _rate_between(samples: list[tuple[float, int]], low: int, high: int) -> float:
    """Rows/s while the count went from `low` to `high`, interpolating between samples."""
    def when(count: int) -> float | None:
        for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
            if c0 <= count <= c1 and c1 > c0:
                return t0 + (t1 - t0) * (count - c0) / (c1 - c0)
        return None

    start, end = when(low), when(high)
    if start is None or end is None or end <= start:
        return 0.0
    return (high - low) / (end - start)


# 9. Many small batches ------------------------------------------------------------------------

def many_small_batches(bench: Bench) -> Row:
    users = [bench_user(f"-u{i:02d}") for i in range(20)]
    count = max(len(users), bench.n(200, minimum=20))
    per_batch, concurrency, latency_ms = 50, 2, 200
    total = count * per_batch
    bench.fake.configure(latency_ms=latency_ms, jitter_ms=0, error_rate=0, rpm_limit=None)
    bench.log(f"9. many small batches: reference, one batch of {total:,} rows at concurrency "
              f"{count * concurrency}")
    ref = bench.run_batch(make_rows(total), concurrency=count * concurrency,
                          timeout=total / (count * concurrency) * latency_ms / 100 + 120)
    ref_rate = total / ref.seconds
    bench.log(f"   reference {ref.seconds:.1f} s; now {count} batches of {per_batch} rows from "
              f"{len(users)} users")
    created: dict[int, tuple[int, float]] = {}  # batch id -> (user id, commit time)
    start = timezone.now()
    for i in range(count):
        user = users[i % len(users)]
        batch = services.batch_create(owner=user, prompt="Classify: {{text}}",
                                      rows=make_rows(per_batch, seed=i), name=f"small {i}",
                                      model="bench-model", concurrency=concurrency,
                                      use_cache=False)  # repeats must reach the model
        created[batch.pk] = (user.pk, time.time())
    created_s = (timezone.now() - start).total_seconds()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        close_old_connections()
        if not Batch.objects.filter(pk__in=created).exclude(
                status__in=[Batch.Status.COMPLETED, Batch.Status.COMPLETED_WITH_ERRORS,
                            Batch.Status.CANCELLED, Batch.Status.FAILED]).exists():
            break
        time.sleep(0.25)
    batches = list(Batch.objects.filter(pk__in=created))
    end = max((b.finished_at for b in batches if b.finished_at), default=timezone.now())
    span = (end - start).total_seconds()
    # Counted live: a batch that ended early (failed, cancelled) has no stored counts.
    succeeded = BatchResult.objects.filter(batch_id__in=created,
                                           status=BatchResult.Status.SUCCEEDED).count()
    # What a lost row looks like, so a failing run says why.
    unfinished = "".join(
        f"; batch {b.pk} {b.status} {b.status_counts()} {b.last_error[:200]!r}"
        for b in batches if b.status != Batch.Status.COMPLETED)
    waits = []
    for user in users:
        mine = [pk for pk, (owner, _) in created.items() if owner == user.pk]
        first_commit = min(created[pk][1] for pk in mine)
        first_row = (BatchResult.objects.filter(batch_id__in=mine, started_at__isnull=False)
                     .order_by("started_at").values_list("started_at", flat=True).first())
        waits.append(first_row.timestamp() - first_commit if first_row else math.inf)
    for batch in batches:
        services.batch_delete(batch=batch)
    drop_queued_slices()  # the creations' 400, nearly all still queued (see its docstring)
    rate = total / span
    ratio = rate / ref_rate
    worst = max(waits)
    complete = succeeded == total
    return Row(
        9, f"Many small batches ({count} x {per_batch} rows, {len(users)} users, "
           f"latency {latency_ms} ms)", total, span, rate,
        f"one batch {ref_rate:,.0f}/s", ratio,
        f"{ratio:.2f} x one batch; created in {created_s:.1f} s; first row waited at most "
        f"{worst:.1f} s" + ("" if complete else f"; only {succeeded:,} succeeded{unfinished}"),
        ">= 0.90 x one batch; first row <= 5 s", complete and ratio >= 0.9 and worst <= 5,
        bench.cluster_rss.window_mb, figure=ratio,
        meets=lambda r: r >= 0.9 and worst <= 5, complete=complete,
    )
