"""Gemini through google-genai's async client, with its errors mapped to ours."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from google import genai
from google.genai import errors, types

from batches.providers.base import (
    Attachment,
    ConfigurationError,
    FileUnavailable,
    PermanentError,
    Request,
    Response,
    RetryableError,
    Source,
    UploadedFile,
)
from batches.providers.http import (
    Pools,
    ProviderCache,
    public_url,
    scrub,
    ssl_context,
    status_error,
)
from batches.providers.http import retry_after_header as _retry_after_header

try:  # google-genai uses httpx2 by default but takes httpx when that is what is installed
    import httpx
except ImportError:  # pragma: no cover - depends on the environment
    httpx = None
try:  # and switches its async calls to aiohttp whenever aiohttp is installed
    import aiohttp
except ImportError:  # pragma: no cover - depends on the environment
    aiohttp = None

_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    (httpx2.TransportError,)
    + ((httpx.TransportError,) if httpx else ())
    + ((aiohttp.ClientError,) if aiohttp else ())
)
_BAD_URL_ERRORS: tuple[type[Exception], ...] = (
    httpx2.UnsupportedProtocol, httpx2.InvalidURL
) + ((httpx.UnsupportedProtocol, httpx.InvalidURL) if httpx else ())
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")
DEFAULT_TIMEOUT_S = 120.0
# How Gemini words a 403 for a Files API file that expired or was deleted (not a bad key).
_FILE_GONE = "permission to access the File"
FILE_READY_POLLS = 30
FILE_READY_POLL_S = 1.0


class GeminiProvider:
    """One google-genai client for the process; safe to use from several event loops."""

    def __init__(self, *, api_key: str, base_url: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not api_key:
            raise ConfigurationError("GEMINI_API_KEY is not set")
        self._api_key = api_key
        self.base_url = base_url or None
        self.timeout_s = timeout_s
        http_options = types.HttpOptions(
            base_url=self.base_url,
            timeout=max(1, round(timeout_s * 1000)),  # milliseconds
            # One attempt: the engine owns retries, with the server's delay and its own backoff.
            retry_options=types.HttpRetryOptions(attempts=1),
            # httpx's defaults cap a pool at 100 connections (so concurrency 150 ran only 100
            # requests at a time) and keep 20 idle (so at concurrency 100, 3.7x as many
            # connections were opened). The engine's own concurrency is the bound.
            async_client_args={"limits": httpx2.Limits(
                max_connections=None, max_keepalive_connections=512),
                "verify": ssl_context(), "ssl": ssl_context()},  # "ssl": its websockets
            client_args={"verify": ssl_context()},
        )
        # google-genai 3.4 keeps one httpx connection pool per event loop (and drops those of
        # closed loops), so these clients survive repeated asyncio.run() calls in one process.
        self._pools = Pools(lambda: genai.Client(api_key=api_key, http_options=http_options))
        with self._pools.client() as client:
            self._client = client  # files, token counts and batch jobs

    async def generate(self, request: Request) -> Response:
        config = _config(request)
        with self._pools.client() as client:
            reply = await self._call(lambda: client.aio.models.generate_content(
                model=request.model, contents=_contents(request), config=config))
        return _response(reply, request.model)

    async def upload_file(self, data: bytes, *, mime_type: str,
                          display_name: str) -> UploadedFile:
        """Put a document in the Files API (kept there about 48 hours) and wait until usable."""
        config = types.UploadFileConfig(mime_type=mime_type, display_name=display_name[:512])
        try:
            uploaded = await self._call(lambda: self._client.aio.files.upload(
                file=io.BytesIO(data), config=config))
        except (KeyError, ValueError) as exc:  # the resumable upload protocol broke off
            raise RetryableError(f"Uploading {display_name!r} failed: {exc}") from None
        for _ in range(FILE_READY_POLLS):
            if _name(uploaded.state) != "PROCESSING":
                break
            await asyncio.sleep(FILE_READY_POLL_S)
            name = uploaded.name
            uploaded = await self._call(lambda: self._client.aio.files.get(name=name))  # noqa: B023
        state = _name(uploaded.state) if uploaded.state else "ACTIVE"
        if state != "ACTIVE" or not uploaded.uri:
            raise RetryableError(f"The uploaded file {display_name!r} is not ready ({state})")
        return UploadedFile(uri=uploaded.uri, expires_at=uploaded.expiration_time)

    async def _call(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run one SDK call under our timeout, with its errors mapped to ours."""
        try:
            # The SDK's timeout bounds each read; this bounds the whole call.
            async with asyncio.timeout(self.timeout_s):
                return await make()
        # `from None` throughout: the SDK's exceptions carry the request, API key header included.
        except errors.APIError as exc:
            raise self._api_error(exc) from None
        except _BAD_URL_ERRORS as exc:
            raise ConfigurationError(
                self._scrub(f"GEMINI_BASE_URL is not usable ({public_url(self.base_url)!r}): "
                            f"{exc}")
            ) from None
        except _TRANSPORT_ERRORS as exc:
            kind = "timed out" if "Timeout" in type(exc).__name__ else "connection failed"
            detail = str(exc) or type(exc).__name__
            raise RetryableError(self._scrub(f"Gemini request {kind}: {detail}")) from None
        except TimeoutError:
            raise RetryableError(
                f"Gemini request timed out after {self.timeout_s:g} s"
            ) from None

    def count_tokens(self, model: str, text: str) -> int:
        """Tokens of `text` as one user turn, by the model's own countTokens endpoint."""
        try:
            reply = self._client.models.count_tokens(model=model, contents=text)
        except errors.APIError as exc:
            raise self._api_error(exc) from None
        except _TRANSPORT_ERRORS as exc:
            raise RetryableError(self._scrub(f"countTokens failed: {exc}")) from None
        if reply.total_tokens is None:
            raise PermanentError("countTokens answered without a token count")
        return reply.total_tokens

    async def aclose(self) -> None:
        """Close the running loop's connections; call it last thing before the loop ends.

        Without it they are only released when the SDK notices the loop closed (on the next
        request from another loop) and the garbage collector runs. The provider stays usable.
        """
        loop = asyncio.get_running_loop()
        for client in list(self._pools.clients):
            # google-genai 3.4 internals, read defensively: its per-loop pools have no public
            # close.
            outer = getattr(client._api_client, "_async_httpx_client", None)
            pools = getattr(outer, "_loop_clients", None)
            lock = getattr(outer, "_loop_clients_lock", None)
            if pools is None or lock is None:
                return
            with lock:
                pool = pools.pop(loop, None)
            if pool is not None:
                await pool.aclose()

    def _api_error(self, exc: errors.APIError) -> Exception:
        code = int(exc.code or 0)
        message = str(exc.message or "")[:500]  # a proxy's error page can be long HTML
        text = self._scrub(f"Gemini API error {code} {exc.status or ''}: {message}")
        details = _error_details(exc.details)
        if code == 403 and _FILE_GONE in message:
            return FileUnavailable(text, status=code)

        def retry_after() -> float | None:
            delay = _retry_delay(details)
            if delay is None:
                delay = _retry_after_header(getattr(exc, "response", None))
            return delay

        return status_error(
            code, text, retry_after=retry_after, quota_id=_quota_id(details),
            key_refused=any(d.get("reason") == "API_KEY_INVALID" for d in details))

    def _scrub(self, text: str) -> str:
        return scrub(text, api_key=self._api_key, base_url=self.base_url)


def _contents(request: Request) -> list[types.Content]:
    contents = []
    for prompt, answer in request.history:
        contents.append(types.Content(role="user", parts=[types.Part(text=prompt)]))
        contents.append(types.Content(role="model", parts=[types.Part(text=answer)]))
    parts = [types.Part(text=request.prompt)] + [_part(a) for a in request.documents]
    contents.append(types.Content(role="user", parts=parts))
    return contents


def _part(attachment: Attachment) -> types.Part:
    if attachment.file_uri:
        return types.Part(file_data=types.FileData(file_uri=attachment.file_uri,
                                                   mime_type=attachment.mime_type))
    return types.Part(inline_data=types.Blob(data=attachment.data or b"",
                                             mime_type=attachment.mime_type))


def _config(request: Request) -> types.GenerateContentConfig | None:
    options: dict[str, Any] = {}
    if request.system_instruction:
        options["system_instruction"] = request.system_instruction
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_output_tokens is not None:
        options["max_output_tokens"] = request.max_output_tokens
    if request.response_schema is not None:
        options.update(_schema_options(request.model, request.response_schema))
    thinking = thinking_config(request.model, request.thinking)
    if thinking is not None:
        options["thinking_config"] = thinking
    if request.tools:
        options["tools"] = [_TOOLS[name]() for name in request.tools]
    return types.GenerateContentConfig(**options) if options else None


# The Request's tool names as google-genai Tools (providers.capabilities says which models).
_TOOLS: dict[str, Callable[[], types.Tool]] = {
    "google_search": lambda: types.Tool(google_search=types.GoogleSearch()),
    "url_context": lambda: types.Tool(url_context=types.UrlContext()),
}
MAX_SOURCES = 50
MAX_SOURCE_URI = 2000
MAX_SOURCE_TITLE = 300


def _sources(candidate: types.Candidate | None) -> tuple[Source, ...]:
    """The web sources of a grounded answer: groundingMetadata's web chunks, then the URLs the
    url_context tool read successfully; each URI once, lengths capped. Kept as the model sent
    them; the pages link only http(s) ones."""
    if candidate is None:
        return ()
    found: dict[str, Source] = {}
    grounding = candidate.grounding_metadata
    for chunk in (grounding.grounding_chunks if grounding else None) or []:
        web = chunk.web
        if web is not None and web.uri:
            uri = web.uri.strip()[:MAX_SOURCE_URI]
            found.setdefault(uri, Source(uri, (web.title or web.domain or "").strip()
                                         [:MAX_SOURCE_TITLE]))
    url_context = candidate.url_context_metadata
    for meta in (url_context.url_metadata if url_context else None) or []:
        status = _name(meta.url_retrieval_status) if meta.url_retrieval_status else ""
        if meta.retrieved_url and status.endswith("SUCCESS"):
            uri = meta.retrieved_url.strip()[:MAX_SOURCE_URI]
            found.setdefault(uri, Source(uri, ""))
    return tuple(found.values())[:MAX_SOURCES]


_VERSION = re.compile(r"gemini-(\d+(?:\.\d+)?)")
# Thinking budgets the Gemini 2.5 models accept (tokens): Pro cannot switch thinking off.
_BUDGET_RANGES = {"pro": (128, 32768), "flash-lite": (512, 24576), "flash": (1, 24576)}
LOW_THINKING_TOKENS = 1024


def thinking_config(model: str, option: str) -> types.ThinkingConfig | None:
    """The batch's thinking option ("off", "low", "default", or a token budget) as the model
    takes it: Gemini 2.5 a `thinking_budget`, Gemini 3 and later a `thinking_level`; None leaves
    the model's own default (and models without thinking alone)."""
    match = _VERSION.search(model)
    if not match or not option or option == "default":
        return None
    version = float(match.group(1))
    budget = {"off": 0, "low": LOW_THINKING_TOKENS}.get(option)
    if budget is None:
        if not option.isdigit():
            return None
        budget = int(option)
    if version < 2.5:
        return None
    if version < 3:
        kind = next(k for k in _BUDGET_RANGES if k in model or k == "flash")
        low, high = _BUDGET_RANGES[kind]
        if budget == 0 and kind != "pro":
            return types.ThinkingConfig(thinking_budget=0)
        return types.ThinkingConfig(thinking_budget=max(low, min(high, budget)))
    if budget == 0:
        level = types.ThinkingLevel.MINIMAL if "flash" in model else types.ThinkingLevel.LOW
    elif budget <= LOW_THINKING_TOKENS:
        level = types.ThinkingLevel.LOW
    else:
        level = types.ThinkingLevel.HIGH
    return types.ThinkingConfig(thinking_level=level)


# Google documents JSON Schema output (responseJsonSchema, with the schema's key order kept) for
# Gemini 2.5 and later; the models before them are documented with the OpenAPI-subset
# responseSchema.
_OPENAPI_SCHEMA_MODELS = re.compile(r"^(models/)?gemini-(1\.|2\.0)")


def _schema_options(model: str, schema: dict) -> dict[str, Any]:
    """Ask for JSON that follows `schema`.

    The 2.5 models (every default GEMINI_MODELS entry) take `response_json_schema`: the schema
    goes to the model verbatim, the same JSON Schema the engine validates answers with
    (jsonschema), keeping `minimum`/`maximum` and `format: date` (outputs adds
    `propertyOrdering`, which both forms take, for the column order). `response_schema`
    is Gemini's older OpenAPI-3.0 subset, which google-genai rebuilds into its own Schema type
    and which older models need; they get it only when a deployment lists them.
    """
    key = "response_schema" if _OPENAPI_SCHEMA_MODELS.match(model) else "response_json_schema"
    return {"response_mime_type": "application/json", key: schema}


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _response(reply: types.GenerateContentResponse, model: str) -> Response:
    feedback = reply.prompt_feedback
    if feedback is not None and feedback.block_reason:
        reason = _name(feedback.block_reason)
        raise PermanentError(f"The prompt was blocked (block reason: {reason})")
    candidate = reply.candidates[0] if reply.candidates else None
    finish = _name(candidate.finish_reason) if candidate and candidate.finish_reason else "NONE"
    parts = (candidate.content.parts if candidate and candidate.content else None) or []
    text = "".join(part.text for part in parts if part.text and not part.thought)
    if not text:
        # SAFETY, RECITATION, PROHIBITED_CONTENT, BLOCKLIST, SPII... or simply nothing.
        raise PermanentError(f"The model returned no text (finish reason: {finish})")
    usage = reply.usage_metadata
    return Response(
        text=text,
        finish_reason=finish,
        prompt_tokens=usage.prompt_token_count if usage is not None else None,
        output_tokens=usage.candidates_token_count if usage is not None else None,
        model_version=reply.model_version or model,
        thoughts_tokens=usage.thoughts_token_count if usage is not None else None,
        cached_tokens=usage.cached_content_token_count if usage is not None else None,
        sources=_sources(candidate),
    )


def _error_details(body: Any) -> list[dict]:
    error = body.get("error", body) if isinstance(body, dict) else {}
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _quota_id(details: list[dict]) -> str | None:
    for detail in details:
        if detail.get("@type", "").endswith("google.rpc.QuotaFailure"):
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict) and violation.get("quotaId"):
                    return str(violation["quotaId"])
    return None


def _retry_delay(details: list[dict]) -> float | None:
    """RetryInfo.retryDelay is a protobuf Duration in JSON: "38s", "1.5s"."""
    for detail in details:
        if detail.get("@type", "").endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


_providers = ProviderCache("GEMINI", GeminiProvider, DEFAULT_TIMEOUT_S)


def get_provider() -> GeminiProvider:
    """The process's provider, rebuilt when the GEMINI_* settings change."""
    return _providers.get()


def reset_provider() -> None:
    _providers.reset()
