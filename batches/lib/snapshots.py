"""Several reads that must agree with each other, taken from one snapshot of the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def one_snapshot() -> Iterator[None]:
    """On PostgreSQL, the reads inside see the database as of one moment: a REPEATABLE READ
    transaction (under READ COMMITTED each statement takes its own snapshot, so a count and a
    list read a few milliseconds apart could disagree). Keep writes out of it: one that meets a
    concurrent update fails there. Elsewhere the reads run as they are: SQLite's transactions
    here begin IMMEDIATE, which would queue a page's reads behind the workers' writes."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield
