"""What every HTTP provider shares: the URL a user may see, secrets to scrub, Retry-After,
and settings read from Django or, outside it, the environment."""

from __future__ import annotations

import email.utils
import os
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit


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
