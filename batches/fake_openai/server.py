"""The fake OpenAI-compatible server: routes, FakeOpenAI for tests, run_forever for the command.

Routes: `POST /v1/chat/completions`, `GET /v1/models` (both under any prefix ending in /v1, so
OPENAI_BASE_URL is `http://host:port/v1` as for vLLM and Ollama). The control routes (GET
/_stats, POST /_reset, GET or POST /_config) answer only a request carrying the server's control
key in the `x-fake-openai-key` header, as the fake Gemini's do. The HTTP transport, the
thread-safe stats and the request log (with each request's time) are the fake Gemini's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from batches.fake_gemini.knobs import LogEntry, Stats
from batches.fake_gemini.server import FakeGemini, _HttpServer
from batches.fake_openai.answers import OpenAIAnswers, error_body, parse_body
from batches.fake_openai.knobs import Knobs
from batches.fakes import ControlRoutes, new_control_key, serve_forever

CONTROL_HEADER = "x-fake-openai-key"

__all__ = ["CONTROL_HEADER", "FakeOpenAI", "FakeOpenAIApp", "new_control_key", "run_forever"]


class FakeOpenAIApp(ControlRoutes):
    """Chat completions and the model list: the request logic, independent of the transport."""

    control_header = CONTROL_HEADER
    error_body = staticmethod(error_body)

    def __init__(self, knobs: Knobs, control_key: str | None = None) -> None:
        super().__init__(knobs, Stats(knobs.log_limit), control_key)
        self._answers = OpenAIAnswers(knobs)

    async def handle(self, method: str, target: str, headers: dict[str, str], body: bytes
                     ) -> tuple[int, dict[str, str], dict]:
        url = urlsplit(target)
        path, query = url.path.rstrip("/"), parse_qs(url.query)
        if method == "POST" and path.endswith("/v1/chat/completions"):
            return await self._complete(_bearer(headers), body)
        if method == "GET" and path.endswith("/v1/models"):
            return self._models(_bearer(headers))
        answer = self.control(method, path, query, headers, body)
        if answer is not None:
            return answer
        return 404, {}, error_body(404, f"Unknown route {method} {path}")

    def _models(self, api_key: str) -> tuple[int, dict, dict]:
        if not api_key or (self.knobs.require_key is not None
                           and api_key != self.knobs.require_key):
            return 401, {}, error_body(401, "Incorrect API key provided.", "invalid_api_key")
        return 200, {}, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake-openai"}
            for m in self.knobs.models]}

    async def _complete(self, api_key: str, raw: bytes) -> tuple[int, dict, dict]:
        body, messages, prompt = parse_body(raw)
        seen = self.stats.begin(prompt)
        status = 0  # logged when the connection is dropped before an answer
        try:
            status, headers, payload = await self._answers.decide(api_key, body, messages,
                                                                  prompt, seen)
            return status, headers, payload
        finally:
            self.stats.end(LogEntry(time.time(), prompt, len(messages), status, body))


def _bearer(headers: dict[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class FakeOpenAI(FakeGemini):
    """The fake on a loopback port, served from a background thread (the fake Gemini's runner).

    `with FakeOpenAI(models=("gpt-test",)) as fake: fake.base_url` (ends in /v1).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, control_key: str | None = None,
                 **knobs: Any) -> None:
        self.host, self.port = host, port
        self.app = FakeOpenAIApp(Knobs(**knobs), control_key)  # type: ignore[assignment]
        self._http = _HttpServer(self.app)  # type: ignore[arg-type]
        self._loop = None
        self._thread = None
        self._serving = False

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def control_headers(self) -> dict[str, str]:
        return {CONTROL_HEADER: self.app.control_key}

    @property
    def files(self) -> Any:
        raise AttributeError("the fake OpenAI server has no Files API")


def run_forever(host: str = "127.0.0.1", port: int = 8766,
                on_ready: Callable[[str], None] | None = None, *, control_key: str,
                **knobs: Any) -> None:
    """Serve the fake in this thread until interrupted (Ctrl-C)."""
    app = lambda: FakeOpenAIApp(Knobs(**knobs), control_key)  # noqa: E731
    serve_forever(lambda: _HttpServer(app()), host, port, on_ready,  # type: ignore[arg-type]
                  path="/v1")
