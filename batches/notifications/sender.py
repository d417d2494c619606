"""One webhook POST: to the checked address, no redirects, a hard deadline, a capped answer.

Plain http.client rather than an HTTP library: it follows no redirects, and its connection
factory can be pointed at the address safety.resolve() checked while TLS still verifies the
host name."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from batches.notifications import safety

# Read at most this much of an answer; the log keeps the first LOG_BYTES of it.
MAX_ANSWER_BYTES = 64 * 1024
LOG_BYTES = 1024


@dataclass
class Answer:
    status: int | None
    duration_ms: int
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float) -> Answer:
    """POST `body`; whatever happens comes back as an Answer, never as an exception."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        safety.check_url(url)
        parts = urlsplit(url)
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        address = safety.resolve(parts.hostname, port)
    except safety.UnsafeURL as err:
        return Answer(None, took(), error=f"Refused: {err}")
    if https:
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout_s,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout_s)
    conn._create_connection = (  # type: ignore[attr-defined]
        lambda _addr, timeout=None, source_address=None:
        socket.create_connection((address, port), timeout, source_address))
    # The socket timeout bounds each read; the timer bounds the whole exchange.
    cut = threading.Event()
    timer = threading.Timer(timeout_s, _cut_off, (conn, cut))
    timer.start()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read(MAX_ANSWER_BYTES)
        return Answer(response.status, took(),
                      body=answer[:LOG_BYTES].decode("utf-8", errors="replace"))
    except (OSError, http.client.HTTPException) as err:
        if cut.is_set() or isinstance(err, TimeoutError | socket.timeout):
            return Answer(None, took(), error=f"No answer within {timeout_s:g} s.")
        return Answer(None, took(), error=f"{type(err).__name__}: {err}"[:500])
    finally:
        timer.cancel()
        conn.close()


def _cut_off(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
