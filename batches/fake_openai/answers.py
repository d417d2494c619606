"""What the fake OpenAI server answers to chat completions: OpenAI's error bodies, 429s with
Retry-After, the echo, and JSON following the request's `json_schema` (the fake Gemini's
structured answers, so a test predicts each row's data the same way).

Every decision depends only on the knobs, the seed, the prompt and how many times that prompt
was seen, never on arrival order.
"""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

from batches.fake_gemini import demo, structured
from batches.fake_openai.knobs import Knobs
from batches.fakes import delay, drawn_error, fails_now

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
          429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}
_MESSAGES = {
    400: "Invalid request.",
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
}


def error_body(status: int, message: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message or _MESSAGES.get(status, "Error"),
                      "type": _TYPES.get(status, "api_error"), "param": None, "code": code}}


def words(text: str) -> int:
    return len(text.split())


def text_of(content: Any) -> str:
    """A message's content: a string, or the text of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return ""


def schema_of(body: dict) -> dict | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = (fmt.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


class OpenAIAnswers:
    """Decide each chat completion from the knobs: key, model, errors, then the answer."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self._responses = 0

    async def decide(self, api_key: str, body: dict, messages: list, prompt: str,
                     seen: int) -> tuple[int, dict, dict]:
        k = self.knobs
        if not api_key or (k.require_key is not None and api_key != k.require_key):
            return 401, {}, error_body(401, "Incorrect API key provided.", "invalid_api_key")
        if k.down:
            return 503, {}, error_body(503)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return 400, {}, error_body(400, "you must provide a model parameter")
        if k.models and model not in k.models:
            return 404, {}, error_body(404, f"The model `{model}` does not exist or you do not "
                                            "have access to it.", "model_not_found")
        if not messages or not all(isinstance(m, dict) for m in messages):
            return 400, {}, error_body(400, "'messages' must contain at least one message.")
        rng = random.Random(f"{k.seed}:{prompt}:{seen}")
        await delay(k, rng)
        if any(s in prompt for s in k.fail_permanently):
            return 400, {}, error_body(400)
        if fails_now(prompt, seen, k.rate_limit_times):
            return self._too_many()
        if fails_now(prompt, seen, k.fail_times):
            return 503, {}, error_body(503)
        status = drawn_error(k, rng)
        if status is not None:
            return self._too_many() if status == 429 else (status, {}, error_body(status))
        return 200, {}, self._answer(model, body, messages, prompt)

    def _too_many(self) -> tuple[int, dict, dict]:
        delay = self.knobs.retry_after_s
        headers = {} if delay is None else {"Retry-After": _seconds(delay)}
        return 429, headers, error_body(429, code="rate_limit_exceeded")

    def _answer(self, model: str, body: dict, messages: list, prompt: str) -> dict:
        k = self.knobs
        self._responses += 1
        finish = "stop"
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        schema = schema_of(body)
        if any(s in prompt for s in k.refuse):
            message["refusal"] = "I'm sorry, I cannot help with that."
        elif any(s in prompt for s in k.empty_answer):
            message["content"] = ""
        elif k.demo_answers:
            message["content"] = (json.dumps(demo.json_answer(prompt, schema))
                                  if schema is not None else demo.text_answer(prompt))
        elif schema is not None:
            turns = [("model" if m.get("role") == "assistant" else "user",
                      text_of(m.get("content"))) for m in messages if m.get("role") != "system"]
            message["content"] = structured.answer_text(
                schema, turns, invalid_once=k.json_invalid_once,
                invalid_always=k.json_invalid_always, mismatch=k.json_mismatch)
        else:
            turn = sum(1 for m in messages if m.get("role") == "user")
            text = (f"[turn {turn}] " if turn > 1 else "") + "ECHO: " + prompt
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            if isinstance(limit, int) and words(text) > limit:
                text, finish = " ".join(text.split()[:limit]), "length"
            message["content"] = text
        prompt_tokens = sum(words(text_of(m.get("content"))) for m in messages)
        completion = words(message["content"] or "") + k.reasoning_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": k.reasoning_tokens},
        }
        return {"id": f"chatcmpl-fake{self._responses:x}", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish,
                             "logprobs": None}],
                "usage": usage}


def _seconds(delay: float) -> str:
    """Retry-After in whole seconds (as HTTP has it), or with decimals when under a second
    apart (OpenAI-compatible servers send both; the SDK and the provider read both)."""
    return str(int(delay)) if delay == int(delay) else f"{math.ceil(delay * 1000) / 1000:g}"


def parse_body(raw: bytes) -> tuple[dict, list, str]:
    """(body, messages, the last user message's text); empty on malformed JSON."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {}, [], ""
    if not isinstance(body, dict):
        return {}, [], ""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return body, messages, text_of(users[-1].get("content")) if users else ""
