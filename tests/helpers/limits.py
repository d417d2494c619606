"""Helpers for tests/limits/test_limits.py: fake clocks, an in-memory backend, and a worker process
driving its own Limiter on a shared backend with a clock shared between processes."""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
import traceback

from batches.limits.state import State

SPAWN = multiprocessing.get_context("spawn")


class FakeClock:
    """A clock that only moves when told to; `sleep` moves it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)


class MemoryBackend:
    """The backend contract in one process's memory, counting round-trips."""

    uses_db = False

    def __init__(self) -> None:
        self.states: dict[str, State] = {}
        self.transactions = 0
        self.reads = 0
        self._lock = threading.Lock()

    def transact(self, keys, fn, clock):
        with self._lock:
            self.transactions += 1
            states = {key: self.states.get(key, State(key)).copy() for key in keys}
            result = fn(states, clock())
            self.states.update(states)
            return result

    def read(self, keys):
        with self._lock:
            self.reads += 1
            return {key: self.states.get(key, State(key)).copy() for key in keys}


class NoBackend:
    """Fails the test on any round-trip."""

    uses_db = False

    def transact(self, keys, fn, clock):
        raise AssertionError(f"unexpected round-trip for {keys}")

    def read(self, keys):
        raise AssertionError(f"unexpected read of {keys}")


def max_in_window(grants: list[tuple[float, int]], window: float = 60.0) -> int:
    """The most permits granted in any window (t - window, t], as the server counts them."""
    grants = sorted(grants)
    best, total, start = 0, 0, 0
    for t, k in grants:
        total += k
        while grants[start][0] <= t - window:
            total -= grants[start][1]
            start += 1
        best = max(best, total)
    return best


class SharedClock:
    """A fake clock in shared memory; remembers the last time this process read it."""

    def __init__(self, value) -> None:
        self.value = value
        self.last = 0.0

    def __call__(self) -> float:
        self.last = self.value.value
        return self.last

    def advance_to(self, t: float) -> None:
        with self.value.get_lock():
            self.value.value = max(self.value.value, t)


def hammer(limiter, clock: SharedClock, *, model: str, rpm: int, end: float,
           seed: int, start_at: float) -> list[tuple[float, int]]:
    """Ask for permits as fast as the budget allows until the shared clock reaches `end`.

    Both processes wait for the same wall-clock `start_at`, so one cannot use up the whole
    window before the other has read its command. A denial moves the shared clock to when the
    budget said to come back; grant times are the clock value read inside the granting
    transaction.
    """
    time.sleep(max(0.0, start_at - time.time()))
    rng = random.Random(seed)
    grants = []
    while clock.value.value < end:
        granted, wait = limiter.try_acquire(model, rpm=rpm, tpm=None, n=rng.randint(1, 3))
        if granted:
            grants.append((clock.last, granted))
            time.sleep(0.001)  # lets the other process in: SQLite's lock is not fair
            if rng.random() < 0.3:
                clock.advance_to(clock.last + rng.uniform(0, 0.05))
        else:
            clock.advance_to(clock.last + wait)
    return grants


def serve(conn, backend_kind: str, backend_arg: str, db_settings: dict | None, clock_value,
          threshold: int, cooldown: float) -> None:
    """Worker process: run Limiter calls sent over `conn` until told to stop."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")
    import django
    from django.conf import settings

    if db_settings:
        settings.DATABASES["default"].update(db_settings)
    django.setup()

    from batches.limits import Limiter
    from batches.limits.backends import DatabaseBackend, RedisBackend

    backend = DatabaseBackend() if backend_kind == "database" else RedisBackend(
        "redis://127.0.0.1:6379/0", prefix=backend_arg)
    clock = SharedClock(clock_value)
    limiter = Limiter(backend, clock=clock, threshold=threshold, cooldown=cooldown)
    while True:
        command, kwargs = conn.recv()
        if command == "stop":
            break
        try:
            if command == "ping":
                result = "pong"
            elif command == "hammer":
                result = hammer(limiter, clock, **kwargs)
            else:
                result = getattr(limiter, command)(**kwargs)
            conn.send(("ok", result))
        except Exception:
            conn.send(("error", traceback.format_exc()))
    conn.close()


class Worker:
    """A real OS process with its own Limiter (and local view) on the shared backend."""

    def __init__(self, backend_kind: str, backend_arg: str, db_settings: dict | None,
                 clock_value, *, threshold: int = 3, cooldown: float = 10.0) -> None:
        self.conn, child = SPAWN.Pipe()
        self.process = SPAWN.Process(
            target=serve, daemon=True,
            args=(child, backend_kind, backend_arg, db_settings, clock_value, threshold,
                  cooldown))
        self.process.start()

    def send(self, command: str, **kwargs) -> None:
        self.conn.send((command, kwargs))

    def result(self, timeout: float = 60.0):
        if not self.conn.poll(timeout):
            raise AssertionError("worker process did not answer")
        status, value = self.conn.recv()
        if status == "error":
            raise AssertionError(f"worker process failed:\n{value}")
        return value

    def call(self, command: str, **kwargs):
        self.send(command, **kwargs)
        return self.result()

    def stop(self) -> None:
        try:
            self.conn.send(("stop", {}))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
