"""What a test does when a service it needs (Redis, PostgreSQL, Chromium) is missing: skip on a
laptop, FAIL in CI (CI=true), where a skipped test would pass while testing nothing."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """Skip the test, or fail it in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service fails the run instead of skipping)",
                    pytrace=False)
    pytest.skip(reason)


def redis_url_or_missing(db: int = 0) -> str:
    import redis

    url = f"redis://127.0.0.1:6379/{db}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        missing("Redis is not reachable on 127.0.0.1:6379 (start it: redis-server --daemonize yes)")
    return url


def chromium_path() -> str | None:
    """The one rule for finding Chromium, as `make chromium` has it: `chromium` on the PATH."""
    return shutil.which("chromium")
