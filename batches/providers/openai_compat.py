"""Any OpenAI-compatible chat completions endpoint (OpenAI, OpenRouter, vLLM, Ollama) through
the official `openai` SDK's async client, with its errors mapped to ours.

The SDK retries on its own; `max_retries=0` leaves retries (with the server's `Retry-After` and
the engine's backoff) to the engine alone. httpx connection pools belong to the event loop that
opened them, and a worker runs one `asyncio.run()` per slice, so the process keeps its clients
(a few small pools, `http.Pools`) per event loop, dropped with its loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import openai

from batches.providers.base import (
    ConfigurationError,
    PermanentError,
    Request,
    Response,
    RetryableError,
    UploadedFile,
)
from batches.providers.http import (
    Pools,
    ProviderCache,
    public_url,
    retry_after_header,
    scrub,
    ssl_context,
    status_error,
)

DEFAULT_TIMEOUT_S = 120.0
SCHEMA_NAME = "answer"
# Gemini's own keyword for the column order (batches.outputs); not JSON Schema.
_GEMINI_ONLY_KEYWORDS = ("propertyOrdering",)
# JSON Schema keywords OpenAI's strict structured outputs accept (its documented subset).
_STRICT_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "description",
    "anyOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minItems", "maxItems", "pattern", "format", "const", "$defs", "$ref", "title",
}
# What the default (and every other non-default) thinking option maps to: nothing is sent.
NEUTRAL_THINKING = ("off", "default")


class OpenAICompatProvider:
    """Chat completions on one base URL with one key; safe to use from several event loops."""

    def __init__(self, *, api_key: str, base_url: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not api_key:
            raise ConfigurationError("OPENAI_API_KEY is not set")
        self._api_key = api_key
        self.base_url = base_url or None
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Pools[openai.AsyncOpenAI]] = weakref.WeakKeyDictionary()

    def _pools(self) -> Pools[openai.AsyncOpenAI]:
        loop = asyncio.get_running_loop()
        with self._lock:
            pools = self._clients.get(loop)
            if pools is None:
                pools = self._clients[loop] = Pools(lambda: openai.AsyncOpenAI(
                    api_key=self._api_key, base_url=self.base_url, timeout=self.timeout_s,
                    max_retries=0,  # the engine owns retries
                    http_client=openai.DefaultAsyncHttpxClient(verify=ssl_context()),
                ))
            return pools

    async def generate(self, request: Request) -> Response:
        if request.documents:
            raise PermanentError("Documents cannot be sent to an OpenAI-compatible model.")
        options = request_options(request)
        try:
            with self._pools().client() as client:
                async with asyncio.timeout(self.timeout_s):
                    reply = await client.chat.completions.create(**options)
        # `from None` throughout: the SDK's exceptions carry the request, key header included.
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise RetryableError(f"The request timed out after {self.timeout_s:g} s") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            if "UnsupportedProtocol" in detail or "InvalidURL" in detail:
                raise ConfigurationError(self._scrub(
                    f"OPENAI_BASE_URL is not usable ({public_url(self.base_url)!r}): {detail}")
                ) from None
            raise RetryableError(self._scrub(f"The connection failed: {detail}")) from None
        except TimeoutError:
            raise RetryableError(f"The request timed out after {self.timeout_s:g} s") from None
        return _response(reply, request.model)

    async def upload_file(self, data: bytes, *, mime_type: str,
                          display_name: str) -> UploadedFile:
        raise PermanentError("Documents cannot be sent to an OpenAI-compatible model.")

    def count_tokens(self, model: str, text: str) -> int:
        """Chat completions endpoints have no token counting: estimates use characters."""
        raise PermanentError("an OpenAI-compatible endpoint has no token counting")

    async def aclose(self) -> None:
        """Close the running loop's clients; the provider stays usable."""
        with self._lock:
            pools = self._clients.pop(asyncio.get_running_loop(), None)
        for client in pools.clients if pools is not None else ():
            await client.close()

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        code = exc.status_code
        message = _error_message(exc)[:500]
        text = self._scrub(f"OpenAI-compatible API error {code}: {message}")
        return status_error(code, text, also_retryable=(409,),
                            retry_after=lambda: _retry_after(exc.response))

    def _scrub(self, text: str) -> str:
        return scrub(text, api_key=self._api_key, base_url=self.base_url)


def request_options(request: Request) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for a request."""
    if request.thinking not in NEUTRAL_THINKING:
        raise PermanentError(f"Thinking {request.thinking!r} is not available on OpenAI-"
                             "compatible models; use off.")
    options: dict[str, Any] = {"model": request.model, "messages": messages(request)}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_output_tokens is not None:
        options["max_tokens"] = request.max_output_tokens
    if request.response_schema is not None:
        options["response_format"] = response_format(request.response_schema)
    return options


def messages(request: Request) -> list[dict[str, str]]:
    """System instruction, then the conversation's earlier turns, then the row's prompt."""
    found = []
    if request.system_instruction:
        found.append({"role": "system", "content": request.system_instruction})
    for prompt, answer in request.history:
        found.append({"role": "user", "content": prompt})
        found.append({"role": "assistant", "content": answer})
    found.append({"role": "user", "content": request.prompt})
    return found


def response_format(schema: dict) -> dict[str, Any]:
    """`json_schema` structured output; strict when the schema meets OpenAI's strict rules
    (every property required, no additional properties, only keywords of its subset).

    An object that does not say whether it allows more properties is sent closed: the batch's
    columns are its properties and nothing else is read from the answer."""
    clean = _closed(_without(schema, _GEMINI_ONLY_KEYWORDS))
    return {"type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": clean, "strict": is_strict(clean)}}


def _without(node: Any, keywords: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _without(v, keywords) if k not in ("properties", "$defs") else
                {name: _without(sub, keywords) for name, sub in v.items()}
                for k, v in node.items() if k not in keywords}
    if isinstance(node, list):
        return [_without(item, keywords) for item in node]
    return node


def _closed(node: Any) -> Any:
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {k: ({name: _closed(sub) for name, sub in v.items()}
                  if k in ("properties", "$defs") and isinstance(v, dict) else _closed(v))
              for k, v in node.items()}
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
        closed["additionalProperties"] = False
    return closed


def is_strict(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return True
    if set(schema) - _STRICT_KEYWORDS:
        return False
    properties = schema.get("properties")
    if isinstance(properties, dict):
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
        if not all(is_strict(sub) for sub in properties.values()):
            return False
    elif schema.get("type") == "object":
        return False
    subs = [schema.get("items")] + list(schema.get("anyOf") or [])
    subs += list((schema.get("$defs") or {}).values())
    return all(is_strict(sub) for sub in subs if sub is not None)


def _response(reply: Any, model: str) -> Response:
    choice = reply.choices[0] if reply.choices else None
    finish = str(choice.finish_reason or "none") if choice else "none"
    message = choice.message if choice else None
    refusal = getattr(message, "refusal", None) if message else None
    if refusal:
        raise PermanentError(f"The model refused: {str(refusal)[:300]}")
    text = (message.content or "") if message else ""
    if not text:
        raise PermanentError(f"The model returned no text (finish reason: {finish})")
    usage = reply.usage
    details = getattr(usage, "completion_tokens_details", None) if usage else None
    prompt_details = getattr(usage, "prompt_tokens_details", None) if usage else None
    reasoning = getattr(details, "reasoning_tokens", None) if details else None
    completion = usage.completion_tokens if usage is not None else None
    if completion is not None and reasoning:
        # OpenAI counts reasoning inside completion_tokens; ours are the answer alone.
        completion = max(0, completion - reasoning)
    return Response(
        text=text,
        finish_reason=finish.upper(),
        prompt_tokens=usage.prompt_tokens if usage is not None else None,
        output_tokens=completion,
        model_version=reply.model or model,
        thoughts_tokens=reasoning or None,
        cached_tokens=getattr(prompt_details, "cached_tokens", None) if prompt_details else None,
    )


def _retry_after(response: Any) -> float | None:
    """OpenAI's `retry-after-ms` when sent (finer), else the standard `Retry-After`."""
    value = getattr(response, "headers", {}).get("retry-after-ms") if response is not None \
        else None
    try:
        return max(0.0, float(value) / 1000) if value else retry_after_header(response)
    except ValueError:
        return retry_after_header(response)


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return str(exc.message or "")


_providers = ProviderCache("OPENAI", OpenAICompatProvider, DEFAULT_TIMEOUT_S)


def get_provider() -> OpenAICompatProvider:
    """The process's provider, rebuilt when the OPENAI_* settings change."""
    return _providers.get()


def reset_provider() -> None:
    _providers.reset()
