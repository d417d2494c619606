"""A local HTTP server that answers like Gemini's generateContent, for tests, benchmarks and demos.

Answers are deterministic: "ECHO: <last user turn>" (prefixed "[turn N] " in a conversation),
token counts are word counts, and every error decision depends only on the seed, the prompt and
how many times that prompt was seen, never on arrival order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from batches.fake_gemini_answers import (
    DAY_QUOTA_ID,
    MINUTE_QUOTA_ID,
    QUOTA_METRIC,
    GeminiAnswers,
    error_body,
    text_of,
)

__all__ = [
    "DAY_QUOTA_ID", "MINUTE_QUOTA_ID", "QUOTA_METRIC", "FakeGemini", "FakeGeminiApp", "Knobs",
    "LogEntry", "Stats", "run_forever",
]


@dataclass
class Knobs:
    """Behaviour of the fake; every field can be changed at run time."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_mix: dict[int, float] = field(default_factory=lambda: {500: 0.2, 503: 0.5, 429: 0.3})
    retry_delay_s: float = 2.0
    retry_after_header: bool = False
    rpm_limit: int | None = None
    rpm_window_s: float = 60.0
    daily_quota_exhausted: bool = False
    fail_permanently: tuple[str, ...] = ()
    block_safety: tuple[str, ...] = ()
    finish_safety: tuple[str, ...] = ()
    empty_answer: tuple[str, ...] = ()
    fail_times: dict[str, int] = field(default_factory=dict)
    down: bool = False
    require_key: str | None = None
    seed: int = 0
    log_limit: int = 100_000

    def update(self, **changes: Any) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if name in ("fail_permanently", "block_safety", "finish_safety", "empty_answer"):
                value = (value,) if isinstance(value, str) else tuple(value)
            elif name == "error_mix":
                value = {int(k): float(v) for k, v in value.items()}
            elif name == "fail_times":
                value = {str(k): int(v) for k, v in value.items()}
            setattr(self, name, value)

    def __post_init__(self) -> None:
        self.update(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class LogEntry:
    time: float
    prompt: str
    contents_length: int
    status: int
    body: dict


class Stats:
    """Thread-safe counters: written on the server's loop, read from tests."""

    def __init__(self, log_limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._log_limit = log_limit
        # Gauges of what is happening now: reset() leaves them alone.
        self.in_flight = 0
        self.open_connections = 0
        self._prompt_in_flight: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.connections_opened = 0
            self.by_prompt: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()
            self.max_in_flight = self.in_flight
            self.prompt_max_concurrency: Counter[str] = Counter(self._prompt_in_flight)
            self.log: deque[LogEntry] = deque(maxlen=self._log_limit)
            self.accepted_times: deque[float] = deque()  # for rpm_limit

    def begin(self, prompt: str) -> int:
        """Count a request in; return how many times this prompt was seen before."""
        with self._lock:
            self.total += 1
            seen = self.by_prompt[prompt]
            self.by_prompt[prompt] = seen + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._prompt_in_flight[prompt] += 1
            now = self._prompt_in_flight[prompt]
            if now > self.prompt_max_concurrency[prompt]:
                self.prompt_max_concurrency[prompt] = now
            return seen

    def connection(self, opened: bool) -> None:
        with self._lock:
            self.connections_opened += opened
            self.open_connections += 1 if opened else -1

    def end(self, entry: LogEntry) -> None:
        with self._lock:
            self.in_flight -= 1
            self._prompt_in_flight[entry.prompt] -= 1
            if not self._prompt_in_flight[entry.prompt]:
                del self._prompt_in_flight[entry.prompt]
            self.by_status[entry.status] += 1
            self.log.append(entry)

    def admit(self, limit: int, window_s: float, now: float) -> float:
        """Record a request under an RPM limit; return 0, or seconds until the window frees."""
        with self._lock:
            times = self.accepted_times
            while times and times[0] <= now - window_s:
                times.popleft()
            if len(times) >= limit:
                return times[0] + window_s - now
            times.append(now)
            return 0.0

    def snapshot(self, prompts: bool = False, log: bool = False) -> dict[str, Any]:
        with self._lock:
            data: dict[str, Any] = {
                "total_requests": self.total,
                "connections_opened": self.connections_opened,
                "open_connections": self.open_connections,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "distinct_prompts": len(self.by_prompt),
                "repeated_prompts": sum(1 for n in self.by_prompt.values() if n > 1),
                "max_concurrency_per_prompt": max(self.prompt_max_concurrency.values(), default=0),
                "prompts_sent_concurrently": sorted(
                    p for p, n in self.prompt_max_concurrency.items() if n > 1
                ),
            }
            if prompts:
                data["by_prompt"] = dict(self.by_prompt)
            if log:
                data["log"] = [dataclasses.asdict(e) for e in self.log]
            return data


class FakeGeminiApp:
    """The request logic, independent of the transport."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.stats = Stats(knobs.log_limit)
        self._answers = GeminiAnswers(knobs, self.stats)

    async def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict]:
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query)
        if method == "POST" and "/models/" in path and path.endswith(":generateContent"):
            model = path.rsplit("/models/", 1)[1].removesuffix(":generateContent")
            api_key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
            return await self._generate(model, api_key, body)
        if method == "GET" and path == "/_stats":
            flag = lambda name: query.get(name, ["0"])[0] not in ("0", "", "false")  # noqa: E731
            return 200, {}, self.stats.snapshot(prompts=flag("prompts"), log=flag("log"))
        if method == "POST" and path == "/_reset":
            self.stats.reset()
            return 200, {}, {"ok": True}
        if path == "/_config" and method in ("GET", "POST"):
            if method == "POST":
                try:
                    self.knobs.update(**json.loads(body or b"{}"))
                except (ValueError, TypeError, AttributeError) as exc:
                    return 400, {}, error_body(400, str(exc))
            return 200, {}, dataclasses.asdict(self.knobs)
        return 404, {}, error_body(404, f"Unknown route {method} {path}")

    async def _generate(self, model: str, api_key: str, raw: bytes) -> tuple[int, dict, dict]:
        try:
            body = json.loads(raw)
            contents = body.get("contents") or []
            prompt = text_of(contents[-1]) if contents else ""
        except (ValueError, AttributeError, TypeError):
            body, contents, prompt = {}, [], ""
        seen = self.stats.begin(prompt)
        status = 0  # logged when the connection is dropped before an answer
        try:
            status, headers, payload = await self._answers.decide(model, api_key, body, contents,
                                                                  prompt, seen)
            return status, headers, payload
        finally:
            self.stats.end(LogEntry(time.time(), prompt, len(contents), status, body))


class _HttpServer:
    """Minimal HTTP/1.1 on asyncio streams: keep-alive, Content-Length bodies."""

    def __init__(self, app: FakeGeminiApp) -> None:
        self.app = app
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[tuple[asyncio.Task, asyncio.StreamWriter]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, backlog=1024)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection, so clients are really refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        connections, self._connections = list(self._connections), set()
        for task, writer in connections:
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*(task for task, _ in connections), return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        entry = (asyncio.current_task(), writer)
        self._connections.add(entry)
        self.app.stats.connection(opened=True)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError):
            pass
        except asyncio.CancelledError:
            # stop() cancels connection tasks; ending normally keeps asyncio's stream callback
            # from logging the cancellation as an error.
            pass
        finally:
            self._connections.discard(entry)
            self.app.stats.connection(opened=False)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                           ) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            return False
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._write(writer, 411, {}, error_body(411, "Send a Content-Length body"), False)
            return False
        length = int(headers.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
        status, extra, payload = await self.app.handle(method, target, headers, body)
        self._write(writer, status, extra, payload, keep_alive)
        await writer.drain()
        return keep_alive

    @staticmethod
    def _write(writer: asyncio.StreamWriter, status: int, extra: dict[str, str], payload: dict,
               keep_alive: bool) -> None:
        data = json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                "Content-Type: application/json; charset=UTF-8",
                f"Content-Length: {len(data)}",
                "Connection: " + ("keep-alive" if keep_alive else "close")]
        head += [f"{name}: {value}" for name, value in extra.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)


class FakeGemini:
    """The fake on a loopback port, served from a background thread with its own event loop.

    `with FakeGemini(latency_ms=0) as fake: fake.url`. `stop()` refuses connections (same port
    kept), `start()` serves again, `close()` ends the thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any) -> None:
        self.host, self.port = host, port
        self.app = FakeGeminiApp(Knobs(**knobs))
        self._http = _HttpServer(self.app)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def knobs(self) -> Knobs:
        return self.app.knobs

    @property
    def stats(self) -> Stats:
        return self.app.stats

    @property
    def down(self) -> bool:
        return self.app.knobs.down

    @down.setter
    def down(self, value: bool) -> None:
        self.app.knobs.down = value

    def configure(self, **knobs: Any) -> None:
        self.app.knobs.update(**knobs)

    def reset(self) -> None:
        self.app.stats.reset()

    def snapshot(self, prompts: bool = True, log: bool = False) -> dict[str, Any]:
        return self.app.stats.snapshot(prompts=prompts, log=log)

    def start(self) -> FakeGemini:
        if self._thread is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="fake-gemini",
                                            daemon=True)
            self._loop = loop
            self._thread.start()
        if not self._serving:
            self.port = self._call(self._http.start(self.host, self.port))
            self._serving = True
        return self

    def stop(self) -> None:
        if self._serving:
            self._call(self._http.stop())
            self._serving = False

    def close(self) -> None:
        if self._thread is None:
            return
        self.stop()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._thread = self._loop = None

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_forever(host: str = "127.0.0.1", port: int = 8765,
                on_ready: Callable[[str], None] | None = None, **knobs: Any) -> None:
    """Serve the fake in this thread until interrupted (Ctrl-C)."""

    async def main() -> None:
        server = _HttpServer(FakeGeminiApp(Knobs(**knobs)))
        bound = await server.start(host, port)
        if on_ready is not None:
            on_ready(f"http://{host}:{bound}")
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
