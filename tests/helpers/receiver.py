"""A real webhook receiver: stdlib http.server on a free loopback port, in a thread.

    with Receiver(answers=[500, 500, 500, 200]) as receiver:
        ... receiver.url ...
        receiver.wait_for(4)
        receiver.requests[0].headers["Batchsite-Event-Id"]

`answers` are the statuses of successive requests (the last one repeats); "hang" holds the
request until `release()` or the receiver closes. `got_request` is set at each arrival.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    def __init__(self, answers: list[int | str] | None = None) -> None:
        self.answers = list(answers or [200])
        self.requests: list[Received] = []
        self.got_request = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    n = len(receiver.requests)
                    receiver.requests.append(Received(self.path, dict(self.headers.items()),
                                                      body, time.monotonic()))
                    answer = receiver.answers[min(n, len(receiver.answers) - 1)]
                receiver.got_request.set()
                if answer == HANG:
                    receiver._release.wait(120)
                    return
                text = b'{"ok": true}' if 200 <= int(answer) < 300 else b"receiver says no"
                self.send_response(int(answer))
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self._release.set()

    def event_ids(self) -> list[str]:
        return [r.headers.get("Batchsite-Event-Id") for r in self.requests]

    def wait_for(self, count: int, timeout: float = 30, tick=None) -> list[Received]:
        end = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > end:
                raise AssertionError(f"{len(self.requests)} of {count} requests after {timeout} s")
            if tick is not None:
                tick()
            time.sleep(0.05)
        return self.requests
