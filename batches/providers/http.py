"""What every HTTP provider shares: the URL a user may see, secrets to scrub, Retry-After,
an HTTP status as one of our errors, settings read from Django or, outside it, the
environment, and the process's provider rebuilt when those settings change."""

from __future__ import annotations

import contextlib
import email.utils
import functools
import os
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from batches.providers.base import ConfigurationError, PermanentError, RetryableError

P = TypeVar("P")
C = TypeVar("C")
# httpcore's pool looks at every one of its connections on each request and each response (an
# idle one with a socket probe through anyio), so its CPU per request grows with the pool: at
# concurrency 200 that was 28 % of a Gemini worker's CPU. Requests are spread over up to this
# many clients, each with a pool of its own (Pools).
POOLS = 32
# Worth another try whatever the provider: a timeout, a rate limit, and every 5xx but 501.
RETRYABLE_STATUSES = frozenset({408, 429})


def public_url(url: str | None) -> str:
    """The URL without user, password, query or fragment: what a user may see of it."""
    try:
        parts = urlsplit(url or "")
        hostname = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    if not parts.netloc:  # no scheme: cut what looks like a query or credentials by hand
        bare = (url or "").split("?", 1)[0].split("#", 1)[0]
        return bare.rsplit("@", 1)[-1]
    if ":" in hostname:
        hostname = f"[{hostname}]"  # an IPv6 address
    host = f"{hostname}:{port}" if port else hostname
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.query, parts.fragment, parts.netloc.rpartition("@")[0]]
    return [s for s in found if len(s) >= 3]


def scrub(text: str, *, api_key: str, base_url: str | None) -> str:
    """Remove the API key and the base URL's credentials and query from a user's message."""
    if base_url:
        text = text.replace(base_url, public_url(base_url))
        for secret in url_secrets(base_url):
            text = text.replace(secret, "[redacted]")
    # A key of a few characters is a placeholder for the fake, and would mangle every word.
    if len(api_key) < 8:
        return text
    return text.replace(api_key, "[redacted]")


def status_error(code: int, text: str, *, key_refused: bool = False,
                 also_retryable: Collection[int] = (),
                 retry_after: Callable[[], float | None] = lambda: None,
                 quota_id: str | None = None) -> Exception:
    """The error an HTTP error status stands for: the key refused (401, 403), worth another
    try (RETRYABLE_STATUSES, `also_retryable`, 5xx but 501), or final. `retry_after` is asked
    only of a retryable one."""
    # A refused key fails every row alike: report it once, for the whole batch.
    if code in (401, 403) or key_refused:
        return ConfigurationError(text)
    if code in RETRYABLE_STATUSES or code in also_retryable or (code >= 500 and code != 501):
        if quota_id:
            text += f" (quota: {quota_id})"
        return RetryableError(text, retry_after=retry_after(), status=code, quota_id=quota_id)
    return PermanentError(text, status=code or None)


def retry_after_header(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def setting(name: str, default: Any) -> Any:
    from django.conf import settings

    if settings.configured and hasattr(settings, name):
        return getattr(settings, name)
    return os.environ.get(name, default)


class ProviderCache(Generic[P]):
    """The process's provider, built from the `<PREFIX>_API_KEY`, `_BASE_URL` and `_TIMEOUT_S`
    settings and rebuilt when they change."""

    def __init__(self, prefix: str, build: Callable[..., P], default_timeout_s: float) -> None:
        self._prefix = prefix
        self._build = build
        self._default_timeout_s = default_timeout_s
        self._lock = threading.Lock()
        self._cached: tuple[tuple, P] | None = None

    def get(self) -> P:
        prefix, default = self._prefix, self._default_timeout_s
        api_key = setting(f"{prefix}_API_KEY", "") or ""
        if not api_key:
            raise ConfigurationError(f"{prefix}_API_KEY is not set")
        base_url = setting(f"{prefix}_BASE_URL", "") or None
        try:
            timeout_s = float(setting(f"{prefix}_TIMEOUT_S", default) or default)
        except ValueError:
            raise ConfigurationError(f"{prefix}_TIMEOUT_S is not a number") from None
        key = (api_key, base_url, timeout_s)
        with self._lock:
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, self._build(api_key=api_key, base_url=base_url,
                                                 timeout_s=timeout_s))
            return self._cached[1]

    def reset(self) -> None:
        with self._lock:
            self._cached = None


class Pools(Generic[C]):
    """Clients with a connection pool each, for requests from one event loop at a time or
    several: a request takes the client with the fewest in flight, and a new client is made
    only when every one is busy (up to `most`). So concurrency C keeps about C connections over
    min(C, most) small pools, where one pool would scan all C on every request."""

    def __init__(self, make: Callable[[], C], most: int = POOLS) -> None:
        self._make = make
        self._most = max(1, most)
        self._lock = threading.Lock()
        self.clients: list[C] = []
        self._in_flight: list[int] = []

    @contextlib.contextmanager
    def client(self) -> Iterator[C]:
        with self._lock:
            turn = min(range(len(self.clients)), key=self._in_flight.__getitem__, default=None)
            if turn is None or (self._in_flight[turn] and len(self.clients) < self._most):
                self.clients.append(self._make())
                self._in_flight.append(0)
                turn = len(self.clients) - 1
            self._in_flight[turn] += 1
        try:
            yield self.clients[turn]
        finally:
            with self._lock:
                self._in_flight[turn] -= 1


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for all the process's clients: the one google-genai and httpx make for
    each client by default (SSL_CERT_FILE or SSL_CERT_DIR when set, else httpx's trust store),
    made once. Loading the certificates cost 40-170 ms per client, more than the rest of it."""
    import httpx2  # the providers' HTTP stack, not the web process's

    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return httpx2.create_ssl_context()
