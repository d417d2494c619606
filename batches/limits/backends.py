"""Where the limiter's shared state lives: `RateBucket` rows, or Redis hashes when REDIS_URL is set.

Both offer the same two calls:
- `transact(keys, fn, clock)`: lock the keys' states, read the clock *inside* the lock (so grant
  times are ordered across processes), run `fn(states, now)`, write back the states it changed,
  and return what `fn` returned. One short transaction; nothing waits inside it.
- `read(keys)`: the current states without locking, for cheap refreshes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from batches.limits.state import State

FIELDS = ("tokens", "updated_at", "blocked_until", "failures", "opened_at")

Transaction = Callable[[dict[str, State], float], Any]


class Backend(Protocol):
    uses_db: bool

    def transact(self, keys: list[str], fn: Transaction, clock: Callable[[], float]) -> Any: ...

    def read(self, keys: list[str]) -> dict[str, State]: ...


class DatabaseBackend:
    """`RateBucket` rows; PostgreSQL locks them with SELECT ... FOR UPDATE, SQLite's IMMEDIATE
    transaction mode (settings) takes the database write lock at BEGIN."""

    uses_db = True

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def transact(self, keys: list[str], fn: Transaction, clock: Callable[[], float]) -> Any:
        from django.db import transaction

        from batches.models import RateBucket

        names = {key: self.prefix + key for key in keys}
        with transaction.atomic():
            rows = self._locked(names.values())
            missing = sorted(name for name in names.values() if name not in rows)
            if missing:
                RateBucket.objects.bulk_create([RateBucket(key=name) for name in missing],
                                               ignore_conflicts=True)
                rows = self._locked(names.values())
            now = clock()
            states = {key: _from_row(key, rows[name]) for key, name in names.items()}
            before = {key: state.copy() for key, state in states.items()}
            result = fn(states, now)
            for key, state in states.items():
                if state != before[key]:
                    RateBucket.objects.filter(pk=rows[names[key]].pk).update(
                        **{field: getattr(state, field) for field in FIELDS})
        return result

    def read(self, keys: list[str]) -> dict[str, State]:
        from batches.models import RateBucket

        rows = {row.key: row for row in RateBucket.objects.filter(
            key__in=[self.prefix + key for key in keys])}
        return {key: _from_row(key, rows.get(self.prefix + key)) for key in keys}

    @staticmethod
    def _locked(names: Iterable[str]) -> dict:
        from batches.models import RateBucket

        # A fixed lock order, so two transactions over the same keys cannot deadlock.
        query = RateBucket.objects.select_for_update().filter(key__in=list(names)).order_by("key")
        return {row.key: row for row in query}


class RedisBackend:
    """One Redis hash per key, updated in an optimistic WATCH/MULTI/EXEC transaction."""

    uses_db = False

    def __init__(self, url: str, prefix: str = "batchsite:limits:", ttl: int = 86400) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self.ttl = ttl  # idle buckets disappear; a missing bucket starts full and closed

    def transact(self, keys: list[str], fn: Transaction, clock: Callable[[], float]) -> Any:
        from redis.exceptions import WatchError

        names = {key: self.prefix + key for key in keys}
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*names.values())
                    states = {key: _from_hash(key, pipe.hgetall(name))
                              for key, name in names.items()}
                    now = clock()
                    before = {key: state.copy() for key, state in states.items()}
                    result = fn(states, now)
                    changed = [key for key, state in states.items() if state != before[key]]
                    if not changed:
                        return result
                    pipe.multi()
                    for key in changed:
                        pipe.hset(names[key], mapping=_to_hash(states[key]))
                        pipe.expire(names[key], self.ttl)
                    pipe.execute()
                    return result
                except WatchError:
                    continue  # another worker changed a key between our read and our write

    def read(self, keys: list[str]) -> dict[str, State]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self.prefix + key)
            raw = pipe.execute()
        return {key: _from_hash(key, values) for key, values in zip(keys, raw, strict=True)}

    def delete_all(self) -> None:
        """Remove every key under this backend's prefix (tests)."""
        for name in self.client.scan_iter(match=self.prefix + "*", count=500):
            self.client.delete(name)


def _from_row(key: str, row) -> State:
    if row is None:
        return State(key)
    return State(key, row.tokens, row.updated_at, row.blocked_until, row.failures, row.opened_at)


def _from_hash(key: str, values: dict) -> State:
    if not values:
        return State(key)
    get = {k.decode(): v.decode() for k, v in values.items()}.get
    opened = get("opened_at", "")
    return State(key, float(get("tokens", 0)), float(get("updated_at", 0)),
                 float(get("blocked_until", 0)), int(get("failures", 0)),
                 float(opened) if opened else None)


def _to_hash(state: State) -> dict[str, str]:
    values = {field: getattr(state, field) for field in FIELDS}
    return {k: "" if v is None else repr(v) for k, v in values.items()}
