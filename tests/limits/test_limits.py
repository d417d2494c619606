import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from batches import limits
from batches.limits import Limiter
from batches.limits import state as rules
from batches.limits.backends import DatabaseBackend, RedisBackend
from batches.limits.state import State
from batches.models import RateBucket
from tests.helpers.limits import (
    SPAWN,
    FakeClock,
    MemoryBackend,
    NoBackend,
    Worker,
    max_in_window,
)
from tests.helpers.services import redis_url_or_missing

MODEL = "gemini-test"
T = 1_000.0  # fake unix time; 0 would mean "a bucket never used"


def fresh(key: str = "rpm:m") -> State:
    return State(key)


def greedy_grants(limit: int, seconds: float, *, n: int = 1) -> list[tuple[float, int]]:
    """A caller that always wants more, on a fake clock that jumps to when the bucket says."""
    bucket, block, now, grants = fresh(), fresh("block:m"), T, []
    while now < T + seconds:
        granted, wait = rules.take([(bucket, limit, 1.0)], block, n, now)
        if granted:
            grants.append((now, granted))
        else:
            now += wait
    return grants


# The arithmetic.


def test_it_starts_full_with_one_second_of_burst_then_refills_below_the_limit():
    assert rules.capacity(1200) == 20
    assert rules.refill_rate(1200) == pytest.approx(1180 / 60)
    bucket, block = fresh(), fresh("block:m")

    assert rules.take([(bucket, 1200, 1.0)], block, 50, T) == (20, 0.0)
    granted, wait = rules.take([(bucket, 1200, 1.0)], block, 1, T)
    assert granted == 0 and wait == pytest.approx(60 / 1180)

    assert rules.take([(bucket, 1200, 1.0)], block, 50, T + 0.5)[0] == int(0.5 * 1180 / 60)
    assert rules.take([(bucket, 1200, 1.0)], block, 50, T + 9)[0] == 20  # never above capacity


@pytest.mark.parametrize("limit", [1, 2, 7, 60, 1200, 20_000])
@pytest.mark.parametrize("n", [1, 5])
def test_it_never_grants_more_than_the_limit_in_any_60s_window(limit, n):
    grants = greedy_grants(limit, 150, n=n)

    assert max_in_window(grants) <= limit
    if limit >= 60:
        # The sustained rate stays close to the limit: limit minus one second of burst.
        assert sum(k for _, k in grants) >= 0.95 * limit * 150 / 60


def test_it_charges_the_estimated_tokens_of_each_request_against_tpm():
    rpm, tpm, block = fresh("rpm:m"), fresh("tpm:m"), fresh("block:m")
    buckets = [(rpm, 6000, 1.0), (tpm, 60_000, 250.0)]  # tpm capacity 1,000 tokens

    assert rules.take(buckets, block, 10, T) == (4, 0.0)
    assert rpm.tokens == 96 and tpm.tokens == 0
    granted, wait = rules.take(buckets, block, 1, T)
    assert granted == 0
    assert wait == pytest.approx(250 / rules.refill_rate(60_000))


def test_a_denied_request_spends_nothing_from_any_bucket():
    rpm, tpm, block = fresh("rpm:m"), fresh("tpm:m"), fresh("block:m")
    rules.take([(tpm, 600, 10.0)], block, 1, T)  # tpm bucket now empty
    before = (rpm.copy(), tpm.copy())

    assert rules.take([(rpm, 600, 1.0), (tpm, 600, 10.0)], block, 1, T)[0] == 0
    assert (rpm, tpm) == before


def test_a_request_larger_than_the_capacity_waits_for_a_full_bucket_then_leaves_it_in_debt():
    tpm, block = fresh("tpm:m"), fresh("block:m")  # capacity 100 tokens, refill ~0.83/s
    rate = rules.refill_rate(6000)

    assert rules.take([(tpm, 6000, 500.0)], block, 3, T) == (1, 0.0)
    assert tpm.tokens == -400
    granted, wait = rules.take([(tpm, 6000, 500.0)], block, 1, T + 1)
    assert granted == 0
    assert wait == pytest.approx((100 - (-400 + rate)) / rate)
    assert rules.take([(tpm, 6000, 500.0)], block, 1, T + 1 + wait)[0] == 1


def test_the_bucket_is_held_to_the_limit_of_the_current_caller():
    bucket, block = fresh(), fresh("block:m")
    rules.take([(bucket, 6000, 1.0)], block, 1, T)  # capacity 100, 99 left

    assert rules.take([(bucket, 600, 1.0)], block, 50, T)[0] == 10  # capacity 10


def test_settle_charges_and_refunds_tokens_and_caps_the_debt():
    tpm = fresh("tpm:m")
    rules.adjust(tpm, 6000, 30, T)
    assert tpm.tokens == 70
    rules.adjust(tpm, 6000, -20, T)
    assert tpm.tokens == 90
    rules.adjust(tpm, 6000, 1_000_000, T)
    assert tpm.tokens == -6000


def test_a_clock_behind_the_last_writer_refills_nothing():
    bucket, block = fresh(), fresh("block:m")
    rules.take([(bucket, 600, 1.0)], block, 10, T + 100)

    assert rules.take([(bucket, 600, 1.0)], block, 1, T + 90)[0] == 0
    assert bucket.updated_at == T + 100


def test_a_block_stops_every_bucket_until_it_ends():
    bucket, block = fresh(), fresh("block:m")
    rules.block_until(block, T + 5)

    assert rules.take([(bucket, 600, 1.0)], block, 1, T + 2) == (0, 3.0)
    assert rules.take([(bucket, 600, 1.0)], block, 1, T + 5)[0] == 1


# The limiter over a backend, with a fake clock.


def run(coro):
    return asyncio.run(coro)


def test_it_does_no_io_for_unlimited_callers():
    limiter = Limiter(NoBackend())

    assert run(limiter.acquire(MODEL, rpm=None, tpm=None, tokens=500, n=7)) == 7
    assert run(limiter.acquire(MODEL, rpm=0, tpm=None)) == 1
    assert run(limiter.acquire(MODEL, rpm=None, tpm=1000, tokens=0)) == 1
    assert limiter.try_acquire(MODEL, rpm=None, tpm=None, n=3) == (3, 0.0)
    run(limiter.settle(MODEL, tpm=None, delta=100))


def test_acquire_sleeps_the_computed_wait_instead_of_polling():
    clock, backend = FakeClock(), MemoryBackend()
    limiter = Limiter(backend, clock=clock, sleep=clock.sleep)
    start = clock.now

    async def take_all():
        return [await limiter.acquire(MODEL, rpm=1200, tpm=None) for _ in range(60)]

    assert sum(run(take_all())) == 60
    # 20 from the burst, then one sleep per permit: no tight polling loop.
    assert backend.transactions <= 60 + 40 + 2
    assert len(clock.slept) <= 42
    assert clock.now - start >= 40 / rules.refill_rate(1200) * 0.99


def test_concurrent_coroutines_queue_behind_one_caller_per_model():
    clock, backend = FakeClock(), MemoryBackend()
    limiter = Limiter(backend, clock=clock, sleep=clock.sleep)

    async def many():
        return await asyncio.gather(*[limiter.acquire(MODEL, rpm=600, tpm=None)
                                      for _ in range(100)])

    assert sum(run(many())) == 100
    assert backend.transactions <= 2 * 100


def test_acquire_many_returns_what_the_budget_allows():
    clock, backend = FakeClock(), MemoryBackend()
    limiter = Limiter(backend, clock=clock, sleep=clock.sleep)

    assert run(limiter.acquire(MODEL, rpm=600, tpm=6000, tokens=20, n=50)) == 5  # tpm: 100/20
    assert run(limiter.acquire(MODEL, rpm=600, tpm=6000, tokens=20, n=50)) == 1


def test_backoff_blocks_every_caller_of_the_model_including_unlimited_ones():
    clock, backend = FakeClock(), MemoryBackend()
    limiter = Limiter(backend, clock=clock, sleep=clock.sleep)
    start = clock.now

    run(limiter.backoff(MODEL, 3.0))

    assert limiter.try_acquire(MODEL, rpm=600, tpm=None) == (0, 3.0)
    assert run(limiter.acquire(MODEL, rpm=None, tpm=None)) == 1
    assert clock.now == start + 3.0
    assert limiter.try_acquire("other-model", rpm=600, tpm=None)[0] == 1


def test_backoff_is_capped_and_has_a_default():
    clock = FakeClock()
    limiter = Limiter(MemoryBackend(), clock=clock)

    assert limiter.backoff_sync(MODEL, 38.0) == clock.now + limits.BACKOFF_MAX_S
    assert limiter.backoff_sync("m2", None) == clock.now + limits.BACKOFF_DEFAULT_S


def breaker(threshold=3, cooldown=10.0, backend=None):
    clock = FakeClock()
    limiter = Limiter(backend or MemoryBackend(), clock=clock, sleep=clock.sleep,
                      threshold=threshold, cooldown=cooldown, max_cooldown=40.0)
    return limiter, clock


def test_the_circuit_opens_after_threshold_failures_in_a_row():
    limiter, clock = breaker()

    assert [limiter.record_failure_sync(MODEL) for _ in range(2)] == [False, False]
    assert limiter.open_since(MODEL) is None
    assert limiter.record_failure_sync(MODEL) is True
    assert limiter.open_since(MODEL).timestamp() == pytest.approx(clock.now)
    assert limiter.allow_sync(MODEL) == (False, 10.0)


def test_a_success_resets_the_count_of_failures():
    limiter, _ = breaker()
    limiter.record_failure_sync(MODEL)
    limiter.record_failure_sync(MODEL)
    limiter.record_success_sync(MODEL)

    assert limiter.record_failure_sync(MODEL) is False
    assert limiter.record_failure_sync(MODEL) is False


def test_an_open_circuit_lets_one_probe_through_per_cooldown_and_a_success_closes_it():
    limiter, clock = breaker()
    for _ in range(3):
        limiter.record_failure_sync(MODEL)
    clock.now += 10

    assert limiter.allow_sync(MODEL) == (True, 0.0)
    assert limiter.allow_sync(MODEL) == (False, 10.0)
    limiter.record_success_sync(MODEL)

    assert limiter.open_since(MODEL) is None
    assert limiter.allow_sync(MODEL) == (True, 0.0)


def test_failed_probes_double_the_cooldown_up_to_the_maximum():
    limiter, clock = breaker()
    for _ in range(3):
        limiter.record_failure_sync(MODEL)
    cooldowns = []
    for _ in range(4):
        clock.now += 100
        assert limiter.allow_sync(MODEL)[0] is True
        assert limiter.record_failure_sync(MODEL) is True
        cooldowns.append(limiter.allow_sync(MODEL)[1])

    assert cooldowns == [20.0, 40.0, 40.0, 40.0]


def test_late_failures_of_requests_sent_before_opening_do_not_stretch_the_cooldown():
    limiter, clock = breaker()
    for _ in range(3):
        limiter.record_failure_sync(MODEL)
    clock.now += 1
    for _ in range(5):
        assert limiter.record_failure_sync(MODEL) is True

    assert limiter.allow_sync(MODEL) == (False, 9.0)


def test_record_success_costs_nothing_while_the_circuit_is_known_closed():
    backend = MemoryBackend()
    limiter, clock = breaker(backend=backend)
    limiter.record_failure_sync(MODEL)
    limiter.record_success_sync(MODEL)
    round_trips = backend.transactions + backend.reads

    for _ in range(100):
        run(limiter.record_success(MODEL))
        assert run(limiter.allow(MODEL)) is True

    assert backend.transactions + backend.reads == round_trips


def test_wait_until_allowed_sleeps_until_the_probe_is_due():
    limiter, clock = breaker()
    for _ in range(3):
        limiter.record_failure_sync(MODEL)
    start = clock.now

    assert run(limiter.wait_until_allowed(MODEL)) is True
    assert clock.now >= start + 10
    assert all(s <= limits.REFRESH_S * 1.1 for s in clock.slept)  # polls at most once a second
    assert run(limiter.wait_until_allowed(MODEL, timeout=3)) is False


# The shared backends.


def unique_redis_prefix():

    redis_url_or_missing(0)
    prefix = f"test:limits:{uuid.uuid4().hex}:"
    yield prefix
    RedisBackend("redis://127.0.0.1:6379/0", prefix=prefix).delete_all()


redis_prefix = pytest.fixture(unique_redis_prefix)
redis_module_prefix = pytest.fixture(unique_redis_prefix, scope="module")


@pytest.fixture(params=[
    pytest.param("database", marks=[pytest.mark.database, pytest.mark.django_db]), "redis"])
def make_backend(request):
    if request.param == "database":
        return DatabaseBackend
    prefix = request.getfixturevalue("redis_prefix")
    return lambda: RedisBackend("redis://127.0.0.1:6379/0", prefix=prefix)


def test_two_limiters_share_one_budget_through_the_backend(make_backend):
    clock = FakeClock()
    first = Limiter(make_backend(), clock=clock)
    second = Limiter(make_backend(), clock=clock)

    assert first.try_acquire(MODEL, rpm=600, tpm=None, n=6)[0] == 6
    assert second.try_acquire(MODEL, rpm=600, tpm=None, n=6)[0] == 4
    assert first.try_acquire(MODEL, rpm=600, tpm=None)[0] == 0
    clock.now += 1
    assert second.try_acquire(MODEL, rpm=600, tpm=None, n=20)[0] == int(rules.refill_rate(600))


def test_tokens_and_settlements_are_shared_through_the_backend(make_backend):
    clock = FakeClock()
    first = Limiter(make_backend(), clock=clock)
    second = Limiter(make_backend(), clock=clock)

    assert first.try_acquire(MODEL, rpm=None, tpm=6000, tokens=40, n=5)[0] == 2
    second.settle_sync(MODEL, tpm=6000, delta=-40)  # the answers were cheaper than estimated
    assert first.try_acquire(MODEL, rpm=None, tpm=6000, tokens=40, n=5)[0] == 1


def test_a_backoff_blocks_the_other_limiters_of_the_model(make_backend):
    clock = FakeClock()
    first = Limiter(make_backend(), clock=clock)
    second = Limiter(make_backend(), clock=clock)

    first.backoff_sync(MODEL, 4.0)

    assert second.try_acquire(MODEL, rpm=600, tpm=None) == (0, 4.0)
    clock.now += 4
    assert second.try_acquire(MODEL, rpm=600, tpm=None)[0] == 1


def test_the_breaker_is_shared_through_the_backend(make_backend):
    clock = FakeClock()
    first = Limiter(make_backend(), clock=clock, threshold=3, cooldown=10)
    second = Limiter(make_backend(), clock=clock, threshold=3, cooldown=10)

    first.record_failure_sync(MODEL)
    first.record_failure_sync(MODEL)
    assert second.record_failure_sync(MODEL) is True
    clock.now += limits.REFRESH_S  # first's local view expires
    assert first.allow_sync(MODEL)[0] is False
    assert first.open_since(MODEL) == second.open_since(MODEL)
    clock.now += 10
    assert second.allow_sync(MODEL) == (True, 0.0)
    assert first.allow_sync(MODEL) == (False, 10.0)
    second.record_success_sync(MODEL)
    clock.now += limits.REFRESH_S
    assert first.allow_sync(MODEL) == (True, 0.0)
    assert first.open_since(MODEL) is None


@pytest.mark.database
def test_the_database_backend_keeps_its_state_in_rate_bucket_rows(transactional_db):
    clock = FakeClock()
    limiter = Limiter(DatabaseBackend(), clock=clock)
    db_thread = ThreadPoolExecutor(1)  # as the engine does: one DB thread per slice
    ran_on_db_thread = []

    async def scenario():
        loop = asyncio.get_running_loop()

        def run_db(fn):
            ran_on_db_thread.append(fn)
            return loop.run_in_executor(db_thread, fn)

        granted = await limiter.acquire(MODEL, rpm=600, tpm=None, n=3, run_db=run_db)
        await limiter.backoff(MODEL, 2, run_db=run_db)
        return granted

    try:
        granted = run(scenario())
    finally:
        db_thread.submit(lambda: connection.close()).result()
        db_thread.shutdown()

    assert granted == 3 and len(ran_on_db_thread) == 2
    rows = {row.key: row for row in RateBucket.objects.all()}
    assert rows[f"rpm:{MODEL}"].tokens == 7
    assert rows[f"rpm:{MODEL}"].updated_at == clock.now
    assert rows[f"block:{MODEL}"].blocked_until == clock.now + 2


# Real processes sharing the backend. One pair of worker processes per backend serves every
# test below (starting Django in a process takes a second); each test uses its own model name.


@pytest.fixture(scope="module", params=[
    pytest.param("database", marks=[pytest.mark.database, pytest.mark.django_db(transaction=True)]),
    "redis"])
def worker_pair(request, django_db_setup):
    """(shared fake clock, first worker, second worker), each with its own Limiter."""
    if request.param == "database":
        args = ("database", "", {"NAME": connection.settings_dict["NAME"]})
    else:
        args = ("redis", request.getfixturevalue("redis_module_prefix"), None)
    clock = SPAWN.Value("d", 1_000_000.0)
    pair = [Worker(*args, clock), Worker(*args, clock)]
    for worker in pair:  # both have started Django before any test sends them work
        assert worker.call("ping") == "pong"
    yield clock, *pair
    for worker in pair:
        worker.stop()


@pytest.fixture
def model():
    return f"model-{uuid.uuid4().hex[:12]}"


def test_two_processes_never_exceed_the_shared_budget_in_any_window(worker_pair, model):
    clock, first, second = worker_pair
    rpm, seconds = 60, 130
    start_at = time.time() + 0.5
    for seed, worker in enumerate((first, second)):
        worker.send("hammer", model=model, rpm=rpm, end=clock.value + seconds, seed=seed,
                    start_at=start_at)
    grants_first, grants_second = first.result(), second.result()
    grants = grants_first + grants_second

    assert max_in_window(grants) <= rpm
    assert sum(k for _, k in grants) >= 0.95 * rpm * seconds / 60
    assert grants_first and grants_second


def test_the_breaker_is_shared_by_two_processes(worker_pair, model):
    clock, first, second = worker_pair

    assert first.call("record_failure_sync", model=model) is False
    assert first.call("record_failure_sync", model=model) is False
    assert second.call("record_failure_sync", model=model) is True
    with clock.get_lock():
        clock.value += limits.REFRESH_S
    assert first.call("allow_sync", model=model)[0] is False
    with clock.get_lock():
        clock.value += 10
    allowed = [first.call("allow_sync", model=model)[0], second.call("allow_sync", model=model)[0]]
    assert allowed == [True, False]  # one probe for the whole cool-down
    first.call("record_success_sync", model=model)
    with clock.get_lock():
        clock.value += limits.REFRESH_S
    assert second.call("allow_sync", model=model) == (True, 0.0)
    assert second.call("open_since", model=model) is None


def test_a_backoff_in_one_process_blocks_the_other(worker_pair, model):
    clock, first, second = worker_pair
    assert second.call("try_acquire", model=model, rpm=600, tpm=None)[0] == 1

    first.call("backoff_sync", model=model, seconds=5)

    assert second.call("try_acquire", model=model, rpm=600, tpm=None) == (0, 5.0)
    with clock.get_lock():
        clock.value += 5
    assert second.call("try_acquire", model=model, rpm=600, tpm=None)[0] == 1


class Unreachable(MemoryBackend):
    """A backend whose first `failures` round-trips fail as a restarting database does."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def _fail(self):
        from django.db import OperationalError

        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("server closed the connection unexpectedly")

    def transact(self, keys, fn, clock):
        self._fail()
        return super().transact(keys, fn, clock)

    def read(self, keys):
        self._fail()
        return super().read(keys)


def test_acquire_waits_out_an_unreachable_backend_instead_of_failing():
    clock, backend = FakeClock(), Unreachable(failures=3)
    limiter = Limiter(backend, clock=clock, sleep=clock.sleep)

    assert run(limiter.acquire(MODEL, rpm=600, tpm=None)) == 1
    assert backend.failures == 0 and len(clock.slept) == 3


def test_the_breaker_carries_on_from_the_local_view_when_the_backend_is_unreachable():
    clock, backend = FakeClock(), Unreachable(failures=1000)
    limiter = Limiter(backend, clock=clock, sleep=clock.sleep, threshold=1)

    assert run(limiter.record_failure(MODEL)) is False
    for _ in range(50):
        assert run(limiter.allow(MODEL)) is True
        run(limiter.record_success(MODEL))
    assert backend.failures == 999  # no round-trip per call while the backend is down
    run(limiter.settle(MODEL, tpm=1000, delta=5))
    run(limiter.backoff(MODEL, 2))
    assert limiter.try_acquire(MODEL, rpm=None, tpm=None) == (0, 2.0)  # this process still stops


def test_event_loops_in_several_threads_share_a_redis_budget_on_the_real_clock(redis_prefix):
    limiter = Limiter(RedisBackend("redis://127.0.0.1:6379/0", prefix=redis_prefix))
    rpm, wanted = 6000, 150  # capacity 100, then about 98 a second
    grant_times = []

    async def one_loop():
        for _ in range(wanted // 3 // 5):
            got = await asyncio.gather(*[limiter.acquire(MODEL, rpm=rpm, tpm=None)
                                         for _ in range(5)])
            grant_times.extend([time.time()] * sum(got))

    start = time.time()
    threads = [threading.Thread(target=asyncio.run, args=(one_loop(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(grant_times) == wanted
    # Recorded after each grant, so never earlier than the grant: a safe upper bound.
    late = max(grant_times) - start
    assert wanted <= rules.capacity(rpm) + rules.refill_rate(rpm) * late + 1


def test_a_run_of_failures_opens_the_circuit_only_once_it_has_lasted_long_enough():
    state = State("breaker:m")
    fail = dict(threshold=3, cooldown=10, max_cooldown=60, min_failing=2.0)
    for _ in range(5):  # a burst of random errors within a moment: stays closed
        assert not rules.breaker_failure(state, 100.0, **fail).is_open
    assert not rules.breaker_failure(state, 101.9, **fail).is_open
    assert rules.breaker_failure(state, 102.0, **fail).is_open  # an outage: everything fails on


def test_a_success_restarts_the_run_and_its_clock():
    state = State("breaker:m")
    fail = dict(threshold=2, cooldown=10, max_cooldown=60, min_failing=2.0)
    rules.breaker_failure(state, 100.0, **fail)
    rules.breaker_success(state)
    rules.breaker_failure(state, 103.0, **fail)
    assert not rules.breaker_failure(state, 104.0, **fail).is_open
    assert rules.breaker_failure(state, 105.0, **fail).is_open
