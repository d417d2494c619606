"""Where budgets are kept for every worker and host: `BudgetLedger` rows, or Redis hashes when
REDIS_URL is set (the rate limiter's choice, batches/limits/backends.py).

A ledger holds, for one key (`batch:<id>`, `user:<id>:<YYYY-MM>`), the spend settled so far and
the reservations ("holds") of rows in flight, per claim token, each with the unix time its lease
expires; an expired hold no longer counts, so a dead worker's reservation ends with its lease.
Both stores offer `transact(keys, fn)`: lock the keys' ledgers, run `fn(ledgers, now)`, write
back the ones it changed; one short transaction, nothing waits inside it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Ledger:
    key: str
    spent: int = 0  # nanos
    holds: dict[str, list] = field(default_factory=dict)  # token -> [nanos, expires_at]

    def prune(self, now: float) -> None:
        for token in [t for t, (_, expires) in self.holds.items() if expires <= now]:
            del self.holds[token]

    def held(self) -> int:
        return sum(int(nanos) for nanos, _ in self.holds.values())

    def copy(self) -> Ledger:
        return Ledger(self.key, self.spent, {t: list(h) for t, h in self.holds.items()})


Transaction = Callable[[dict[str, Ledger], float], Any]


class Store(Protocol):
    # True when the ledgers live in the application's database, so that a change to them can
    # commit in the same transaction as the rows it accounts for.
    in_database: bool

    def transact(self, keys: list[str], fn: Transaction) -> Any: ...

    def read(self, keys: list[str]) -> dict[str, Ledger]: ...


class DatabaseStore:
    """PostgreSQL locks the rows (SELECT ... FOR UPDATE, in key order so two transactions
    cannot deadlock); SQLite's IMMEDIATE transactions take the write lock at BEGIN."""

    in_database = True

    def transact(self, keys: list[str], fn: Transaction) -> Any:
        from django.db import transaction

        from batches.models import BudgetLedger

        keys = sorted(set(keys))
        with transaction.atomic():
            rows = self._locked(keys)
            missing = [key for key in keys if key not in rows]
            if missing:
                BudgetLedger.objects.bulk_create([BudgetLedger(key=k) for k in missing],
                                                 ignore_conflicts=True)
                rows = self._locked(keys)
            ledgers = {k: Ledger(k, rows[k].spent_nanos, dict(rows[k].holds)) for k in keys}
            before = {k: ledger.copy() for k, ledger in ledgers.items()}
            result = fn(ledgers, time.time())
            for key, ledger in ledgers.items():
                if ledger != before[key]:
                    BudgetLedger.objects.filter(pk=rows[key].pk).update(
                        spent_nanos=ledger.spent, holds=ledger.holds)
        return result

    def read(self, keys: list[str]) -> dict[str, Ledger]:
        from batches.models import BudgetLedger

        rows = {r.key: r for r in BudgetLedger.objects.filter(key__in=keys)}
        return {k: Ledger(k, rows[k].spent_nanos, dict(rows[k].holds)) if k in rows
                else Ledger(k) for k in keys}

    @staticmethod
    def _locked(keys: list[str]) -> dict:
        from batches.models import BudgetLedger

        query = BudgetLedger.objects.select_for_update().filter(key__in=keys).order_by("key")
        return {row.key: row for row in query}


class RedisStore:
    """One hash per key ({spent, holds as JSON}), updated in WATCH/MULTI/EXEC transactions."""

    in_database = False

    def __init__(self, url: str, prefix: str = "batchsite:budget:",
                 ttl: int = 100 * 86400) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self.ttl = ttl  # a month's ledger outlives its month; the database keeps the truth

    def transact(self, keys: list[str], fn: Transaction) -> Any:
        from redis.exceptions import WatchError

        keys = sorted(set(keys))
        names = {k: self.prefix + k for k in keys}
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*names.values())
                    ledgers = {k: _from_hash(k, pipe.hgetall(n)) for k, n in names.items()}
                    before = {k: ledger.copy() for k, ledger in ledgers.items()}
                    result = fn(ledgers, time.time())
                    changed = [k for k in keys if ledgers[k] != before[k]]
                    if not changed:
                        return result
                    pipe.multi()
                    for key in changed:
                        ledger = ledgers[key]
                        pipe.hset(names[key], mapping={"spent": str(ledger.spent),
                                                       "holds": json.dumps(ledger.holds)})
                        pipe.expire(names[key], self.ttl)
                    pipe.execute()
                    return result
                except WatchError:
                    continue  # another worker changed a ledger between our read and write

    def read(self, keys: list[str]) -> dict[str, Ledger]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self.prefix + key)
            raw = pipe.execute()
        return {k: _from_hash(k, v) for k, v in zip(keys, raw, strict=True)}

    def delete_all(self) -> None:
        """Remove every ledger under this store's prefix (tests)."""
        for name in self.client.scan_iter(match=self.prefix + "*", count=500):
            self.client.delete(name)


def _from_hash(key: str, values: dict) -> Ledger:
    if not values:
        return Ledger(key)
    get = {k.decode(): v.decode() for k, v in values.items()}.get
    return Ledger(key, int(get("spent", "0")), json.loads(get("holds", "{}")))


_store: Store | None = None


def get_store() -> Store:
    """This process's store: Redis when settings.REDIS_URL is set, the database otherwise."""
    global _store
    if _store is None:
        from django.conf import settings

        _store = RedisStore(settings.REDIS_URL) if settings.REDIS_URL else DatabaseStore()
    return _store


def set_store(store: Store | None) -> None:
    """Replace this process's store (tests); None rebuilds it from settings on next use."""
    global _store
    _store = store
