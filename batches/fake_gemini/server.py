"""A local HTTP server that answers like Gemini's generateContent, for tests, benchmarks and demos.

Answers are deterministic: "ECHO: <last user turn>" (prefixed "[turn N] " in a conversation),
token counts are word counts, and every error decision depends only on the seed, the prompt and
how many times that prompt was seen, never on arrival order.

The control routes (GET /_stats, POST /_reset, GET or POST /_config) answer only a request that
carries the server's own control key in the `x-fake-gemini-key` header: a web page open in the
demo user's browser could otherwise reconfigure the model (a custom header cannot be sent across
origins without a CORS preflight, which this server never grants).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from batches.fake_gemini.answers import (
    GeminiAnswers,
    count_tokens,
    error_body,
    invalid_key,
    text_of,
)
from batches.fake_gemini.batchjobs import FakeBatches
from batches.fake_gemini.files import FakeFiles
from batches.fake_gemini.knobs import Knobs, LogEntry, Stats
from batches.fakes import ControlRoutes, serve_forever

CONTROL_HEADER = "x-fake-gemini-key"


class FakeGeminiApp(ControlRoutes):
    """generateContent, countTokens, the Files API and Batch Mode: the request logic,
    independent of the transport."""

    control_header = CONTROL_HEADER
    error_body = staticmethod(error_body)

    def __init__(self, knobs: Knobs, control_key: str | None = None) -> None:
        super().__init__(knobs, Stats(knobs.log_limit), control_key)
        self.files = FakeFiles(knobs)
        self._answers = GeminiAnswers(knobs, self.stats, self.files)
        self.batches = FakeBatches(knobs, self.files, self._answers)
        self.count_tokens_calls = 0

    async def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict | bytes]:
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query)
        if method == "POST" and "/models/" in path and path.endswith(":generateContent"):
            model = path.rsplit("/models/", 1)[1].removesuffix(":generateContent")
            api_key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
            return await self._generate(model, api_key, body)
        answer = self.control(method, path, query, headers, body)
        if answer is not None:
            return answer
        if method == "POST" and "/models/" in path and path.endswith(":countTokens"):
            api_key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
            return self._count_tokens(api_key, body)
        base = "http://" + headers.get("host", "127.0.0.1")
        if method == "POST" and path.startswith("/upload/") and path.endswith("/files"):
            if "upload_id" in query:
                return self.files.chunk(query["upload_id"][0], headers, body, base)
            try:
                meta = json.loads(body or b"{}")
            except ValueError:
                meta = {}
            return self.files.start(headers, meta, base)
        if "/batches" in path or path.endswith(":batchGenerateContent"):
            api_key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
            return self._batches(method, path, api_key, body)
        if method == "GET" and "/files/" in path and path.endswith(":download"):
            return self.files.download(path.rsplit("/files/", 1)[1].removesuffix(":download"))
        if method == "GET" and "/files/" in path and not path.startswith("/upload/"):
            return self.files.get(path.rsplit("/files/", 1)[1], base)
        return 404, {}, error_body(404, f"Unknown route {method} {path}")

    def stats_snapshot(self, *, prompts: bool, log: bool) -> dict[str, Any]:
        return {**self.stats.snapshot(prompts=prompts, log=log),
                "files_api": self.files.snapshot(), "batch_mode": self.batches.snapshot()}

    def _batches(self, method: str, path: str, api_key: str, body: bytes
                 ) -> tuple[int, dict, dict]:
        """Batch Mode routes (batchjobs.py)."""
        if not api_key or (self.knobs.require_key is not None
                           and api_key != self.knobs.require_key):
            return 400, {}, invalid_key()
        if self.knobs.down:
            return 503, {}, error_body(503)
        if method == "POST" and "/models/" in path and path.endswith(":batchGenerateContent"):
            model = path.rsplit("/models/", 1)[1].removesuffix(":batchGenerateContent")
            return self.batches.create(model, body)
        tail = path.rsplit("/batches", 1)[1].lstrip("/")
        if method == "GET" and not tail:
            return self.batches.list()
        if method == "POST" and tail.endswith(":cancel"):
            return self.batches.cancel(tail.removesuffix(":cancel"))
        if method == "GET":
            return self.batches.get(tail)
        if method == "DELETE":
            return self.batches.delete(tail)
        return 404, {}, error_body(404, f"Unknown route {method} {path}")

    def _count_tokens(self, api_key: str, raw: bytes) -> tuple[int, dict, dict]:
        self.count_tokens_calls += 1
        if not api_key or (self.knobs.require_key is not None
                           and api_key != self.knobs.require_key):
            return 400, {}, invalid_key()
        if self.knobs.down:
            return 503, {}, error_body(503)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, {}, error_body(400, "Invalid JSON payload received.")
        return 200, {}, count_tokens(body)

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
    def _write(writer: asyncio.StreamWriter, status: int, extra: dict[str, str],
               payload: dict | bytes, keep_alive: bool) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        extra = dict(extra)
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                "Content-Type: " + extra.pop("Content-Type", "application/json; charset=UTF-8"),
                f"Content-Length: {len(data)}",
                "Connection: " + ("keep-alive" if keep_alive else "close")]
        head += [f"{name}: {value}" for name, value in extra.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)


class FakeGemini:
    """The fake on a loopback port, served from a background thread with its own event loop.

    `with FakeGemini(latency_ms=0) as fake: fake.url`. `stop()` refuses connections (same port
    kept), `start()` serves again, `close()` ends the thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, control_key: str | None = None,
                 **knobs: Any) -> None:
        self.host, self.port = host, port
        self.app = FakeGeminiApp(Knobs(**knobs), control_key)
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
    def control_headers(self) -> dict[str, str]:
        """Headers for the control routes over HTTP."""
        return {CONTROL_HEADER: self.app.control_key}

    @property
    def stats(self) -> Stats:
        return self.app.stats

    @property
    def files(self) -> FakeFiles:
        return self.app.files

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
                on_ready: Callable[[str], None] | None = None, *, control_key: str,
                **knobs: Any) -> None:
    """Serve the fake in this thread until interrupted (Ctrl-C)."""
    serve_forever(lambda: _HttpServer(FakeGeminiApp(Knobs(**knobs), control_key)),
                  host, port, on_ready)
