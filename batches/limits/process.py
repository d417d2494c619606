"""This process's limiter (one per worker process) and the module-level calls the engine
uses; see the package docstring for the interface."""


from __future__ import annotations

import threading
from datetime import datetime

from batches.limits.backends import DatabaseBackend, RedisBackend
from batches.limits.limiter import (
    BACKOFF_DEFAULT_S,
    BACKOFF_MAX_S,
    REFRESH_S,
    Limiter,
    RunDb,
)

__all__ = [
    "BACKOFF_DEFAULT_S", "BACKOFF_MAX_S", "REFRESH_S", "Limiter", "acquire", "allow", "backoff",
    "estimate_tokens", "get_limiter", "open_since", "record_failure", "record_success",
    "set_limiter", "settle", "wait_until_allowed",
]


def estimate_tokens(text: str) -> int:
    """Rough prompt size for the TPM budget: about four characters per token."""
    return max(1, len(text) // 4)


_limiter: Limiter | None = None
_limiter_mutex = threading.Lock()


def get_limiter() -> Limiter:
    """This process's limiter: Redis when settings.REDIS_URL is set, the database otherwise."""
    global _limiter
    with _limiter_mutex:
        if _limiter is None:
            from django.conf import settings

            backend = (RedisBackend(settings.REDIS_URL) if settings.REDIS_URL
                       else DatabaseBackend())
            _limiter = Limiter(backend, threshold=getattr(settings, "BREAKER_THRESHOLD", 10),
                               cooldown=getattr(settings, "BREAKER_COOLDOWN_S", 10.0),
                               min_failing=getattr(settings, "BREAKER_MIN_FAILING_S", 2.0))
        return _limiter


def set_limiter(limiter: Limiter | None) -> None:
    """Replace this process's limiter (tests); None rebuilds it from settings on next use."""
    global _limiter
    with _limiter_mutex:
        _limiter = limiter


async def acquire(model: str, *, rpm: int | None, tpm: int | None, tokens: int = 0, n: int = 1,
                  run_db: RunDb | None = None) -> int:
    return await get_limiter().acquire(model, rpm=rpm, tpm=tpm, tokens=tokens, n=n,
                                       run_db=run_db)


async def settle(model: str, *, tpm: int | None, delta: float,
                 run_db: RunDb | None = None) -> None:
    await get_limiter().settle(model, tpm=tpm, delta=delta, run_db=run_db)


async def backoff(model: str, seconds: float | None, *, run_db: RunDb | None = None) -> None:
    await get_limiter().backoff(model, seconds, run_db=run_db)


async def record_failure(model: str, *, run_db: RunDb | None = None) -> bool:
    return await get_limiter().record_failure(model, run_db=run_db)


async def record_success(model: str, *, run_db: RunDb | None = None) -> None:
    await get_limiter().record_success(model, run_db=run_db)


async def allow(model: str, *, run_db: RunDb | None = None) -> bool:
    return await get_limiter().allow(model, run_db=run_db)


async def wait_until_allowed(model: str, *, run_db: RunDb | None = None,
                             timeout: float | None = None) -> bool:
    return await get_limiter().wait_until_allowed(model, run_db=run_db, timeout=timeout)


def open_since(model: str) -> datetime | None:
    return get_limiter().open_since(model)
