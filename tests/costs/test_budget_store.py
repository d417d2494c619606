"""The budget store on Redis (the database store is what the other cost tests use): concurrent
reservations never pass the limit, and the engine keeps a budget through it."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from batches import costs
from batches.costs.store import RedisStore
from batches.models import Batch
from tests.helpers import costs as cost_helpers
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued
prices = cost_helpers.prices

REDIS_URL = "redis://127.0.0.1:6379/0"
ROW_COST = Decimal("0.0000109")


@pytest.fixture
def redis_store():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    store = RedisStore(REDIS_URL, prefix=f"test:budget:{uuid.uuid4().hex}:")
    costs.set_store(store)
    yield store
    costs.set_store(None)
    store.delete_all()


def test_concurrent_reservations_on_redis_never_pass_the_limit(redis_store):
    def reserve(i: int) -> bool:
        def take(ledgers, now):
            ledger = ledgers["batch:1"]
            if ledger.spent + ledger.held() + 7 > 700:
                return False
            ledger.holds[f"t{i}"] = [7, now + 60]
            return True

        return redis_store.transact(["batch:1", "user:1:2026-11"], take)

    with ThreadPoolExecutor(8) as pool:
        granted = sum(pool.map(reserve, range(400)))

    assert granted == 100
    assert redis_store.read(["batch:1"])["batch:1"].held() == 700


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("prices")
def test_a_batch_budget_holds_through_the_redis_store(fake, make_batch, enqueued, redis_store):
    batch = run_until_done(make_batch([{"text": f"row {i}"} for i in range(30)],
                                      budget=12 * ROW_COST, concurrency=8))

    assert batch.status == Batch.Status.PAUSED
    assert batch.cost_spent == 12 * ROW_COST
    ledger = redis_store.read([f"batch:{batch.pk}"])[f"batch:{batch.pk}"]
    assert ledger.spent == costs.to_nanos(batch.cost_spent) and ledger.holds == {}
