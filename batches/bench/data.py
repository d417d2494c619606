"""Data for the benchmark: rows, CSV files, big finished batches made fast, and its users."""

from __future__ import annotations

import csv
import random

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from batches import services
from batches.models import Batch, BatchResult

BENCH_USER = "bench"
WORDS = ("good bad service fast slow price quality friendly staff room clean noisy food late "
         "early helpful rude cheap expensive view garden parking breakfast wifi quiet").split()
SEED_ROWS = 5000  # rows written through the ORM before the table copies itself


def make_rows(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
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


def finished_batch(owner, n: int, *, name: str = "bench finished") -> Batch:
    """A completed batch of `n` succeeded rows, made in seconds even for a million rows: a few
    thousand rows through the ORM (so every field gets its default), then the table copies
    those rows onto themselves with shifted indexes, doubling until there are enough."""
    now = timezone.now()
    with transaction.atomic():
        batch = Batch.objects.create(
            owner=owner, name=name, prompt_template="Classify: {{text}}", columns=["id", "text"],
            total_rows=n, status=Batch.Status.COMPLETED, started_at=now, finished_at=now,
        )
        seed = min(n, SEED_ROWS)
        BatchResult.objects.bulk_create([
            BatchResult(batch=batch, index=i, input=row, prompt=f"Classify: {row['text']}",
                        status=BatchResult.Status.SUCCEEDED, output=f"positive ({i % 7})",
                        attempts=1, prompt_tokens=20, output_tokens=2, latency_ms=900,
                        started_at=now, finished_at=now)
            for i, row in enumerate(make_rows(seed))
        ], batch_size=1000)
        have = seed
        table = BatchResult._meta.db_table
        fields = [f.column for f in BatchResult._meta.concrete_fields if not f.primary_key]
        cols = ", ".join(connection.ops.quote_name(c) for c in fields)
        index = connection.ops.quote_name("index")
        picks = ", ".join(f"{index} + %s" if c == "index" else connection.ops.quote_name(c)
                          for c in fields)
        with connection.cursor() as cursor:
            while have < n:
                cursor.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {picks} FROM {table} "
                    f"WHERE batch_id = %s AND {index} < %s",
                    [have, batch.pk, min(have, n - have)])
                have += min(have, n - have)
    _set_counts(batch, n)
    return batch


def _set_counts(batch: Batch, n: int) -> None:
    counters = {f.name for f in Batch._meta.concrete_fields}
    updates = {name: n for name in ("succeeded_count",) if name in counters}
    if updates:
        Batch.objects.filter(pk=batch.pk).update(**updates)


def bench_user(suffix: str = "", *, staff: bool = False):
    user, created = get_user_model().objects.get_or_create(username=BENCH_USER + suffix)
    if created or user.is_staff != staff:
        user.set_unusable_password()
        user.is_staff = user.is_superuser = staff
        user.save()
    return user


def bench_users():
    return get_user_model().objects.filter(username__startswith=BENCH_USER)


def refuse_if_others_active() -> None:
    """The bench's workers claim rows of any batch: never run them on other people's work."""
    others = Batch.objects.active().exclude(owner__in=bench_users()).count()
    if others:
        raise RuntimeError(
            f"This database has {others} active batches of other users; the benchmark's "
            "workers would send their rows to the fake model. Run it on a database of its "
            "own (DATABASE_URL)."
        )


def delete_bench_batches() -> None:
    connection.close_if_unusable_or_obsolete()
    for batch in Batch.objects.filter(owner__in=bench_users()):
        services.batch_delete(batch=batch)


def drop_queued_slices() -> int:
    """Drop the engine slices still waiting in the ORM broker's queue; how many.

    Each new batch queues a slice per worker, so scenario 9's 200 creations queue 400 and the
    two running slices do nearly all the work; the rest, each started in turn to find nothing,
    would otherwise run beside the next scenario (or the next bench run, as the queue is kept in
    the database). A slice carries nothing of its own: rows live in the database, and the rescue
    schedule starts a slice for any batch left without one. With Redis as the broker the queue
    is not read here."""
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM

    broker = get_broker()
    if not isinstance(broker, ORM):
        return 0
    waiting = broker.get_connection().filter(key=broker.list_key, lock__lte=timezone.now())
    slices = [task.pk for task in waiting if task.func() == "batches.engine.tasks.run_slice"]
    return broker.get_connection().filter(pk__in=slices).delete()[0]


def table_sizes() -> str:
    """The results table and its indexes, as the database reports them."""
    table = BatchResult._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_table_size(%s), pg_indexes_size(%s)", [table, table])
            data, indexes = cursor.fetchone()
            return f"table {data / 1e6:,.0f} MB, indexes {indexes / 1e6:,.0f} MB"
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        size = cursor.fetchone()[0]
        return f"database file {pages * size / 1e6:,.0f} MB (SQLite)"


def session_cookie(user) -> str:
    """A Cookie header for a logged-in session of `user` (the web server shares the database)."""
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"
