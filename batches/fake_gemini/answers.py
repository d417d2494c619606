"""What the fake Gemini answers to generateContent: error bodies, quota errors, the echo, and
JSON following the request's schema (structured.py).

The rules depend only on the knobs, the seed, the prompt and how many times that prompt was
seen, never on arrival order. The knobs and stats are in knobs.py, the server in server.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from batches.fake_gemini import demo, grounding, structured
from batches.fake_gemini.files import FakeFiles, PartError, describe
from batches.fakes import delay, drawn_error, fails_now

if TYPE_CHECKING:
    from batches.fake_gemini.knobs import Knobs, Stats

MINUTE_QUOTA_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
DAY_QUOTA_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_TYPE = "type.googleapis.com/google.rpc."
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


def error_body(status: int, message: str | None = None, details: list | None = None) -> dict:
    """A Google API error body: {"error": {"code", "message", "status"[, "details"]}}."""
    error: dict[str, Any] = {
        "code": status,
        "message": message or _MESSAGES.get(status, HTTPStatus(status).phrase),
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _duration(seconds: float) -> str:
    """Format like protobuf Duration JSON: "38s", "0.25s"."""
    seconds = max(0.0, seconds)
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}".rstrip("0") + "s"


def _quota_error(quota_id: str, delay_s: float) -> dict:
    message = (_MESSAGES[429] if quota_id == MINUTE_QUOTA_ID else
               "You exceeded your current quota, please check your plan and billing details.")
    return error_body(429, message, [
        {"@type": _TYPE + "QuotaFailure",
         "violations": [{"quotaMetric": QUOTA_METRIC, "quotaId": quota_id}]},
        {"@type": _TYPE + "RetryInfo", "retryDelay": _duration(delay_s)},
    ])


def _words(text: str) -> int:
    return len(text.split())


def invalid_key() -> dict:
    return error_body(400, "API key not valid. Please pass a valid API key.", [
        {"@type": _TYPE + "ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}])


def count_tokens(body: Any) -> dict:
    """A countTokens answer: one token per word of every text part, like generateContent's
    promptTokenCount. Takes `contents`, or a whole `generateContentRequest` (with its
    systemInstruction), as the REST API does."""
    if not isinstance(body, dict):
        body = {}
    request = body.get("generateContentRequest")
    source = request if isinstance(request, dict) else body
    contents = source.get("contents") or []
    tokens = sum(_words(text_of(c)) for c in contents)
    tokens += _words(text_of(source.get("systemInstruction")))
    return {"totalTokens": tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}


# What a thinking level caps thinking at (the REST API's ThinkingLevel values).
LEVEL_TOKENS = {"MINIMAL": 0, "LOW": 1024, "MEDIUM": 8192, "HIGH": None}


def thoughts(config: dict, amount: int) -> int:
    """Thinking tokens an answer reports: the model's own amount, capped by the request's
    thinkingBudget (0 turns it off, -1 leaves it dynamic) or thinkingLevel."""
    # Google's JSON parser takes field names in lowerCamelCase and snake_case alike, and
    # google-genai 3.4 sends thinkingConfig's fields in snake_case.
    thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
    budget = thinking.get("thinkingBudget", thinking.get("thinking_budget"))
    if isinstance(budget, int) and budget >= 0:
        return min(budget, amount)
    level = thinking.get("thinkingLevel", thinking.get("thinking_level", ""))
    cap = LEVEL_TOKENS.get(str(level).upper())
    return min(cap, amount) if cap is not None else amount


def text_of(content: Any) -> str:
    """The joined text parts of one Content dict; "" for anything else."""
    if not isinstance(content, dict):
        return ""
    return "".join(p.get("text", "") for p in content.get("parts") or [] if isinstance(p, dict))


HOLD_MAX_S = 30.0


class GeminiAnswers:
    """Decide each generateContent answer from the knobs: key checks, quotas, errors, the echo."""

    def __init__(self, knobs: Knobs, stats: Stats, files: FakeFiles | None = None) -> None:
        self.knobs = knobs
        self.stats = stats
        self.files = files or FakeFiles(knobs)
        self._responses = 0

    async def _hold(self) -> None:
        end = time.monotonic() + HOLD_MAX_S
        while (0 < self.knobs.hold_until_in_flight and time.monotonic() < end
               and self.stats.in_flight < self.knobs.hold_until_in_flight):
            await asyncio.sleep(0.005)

    async def decide(
        self, model: str, api_key: str, body: dict, contents: list, prompt: str, seen: int
    ) -> tuple[int, dict, dict]:
        k = self.knobs
        if not api_key:
            return 403, {}, error_body(403, "Method doesn't allow unregistered callers (callers "
                                       "without established identity). Please use API Key or "
                                       "other form of API consumer identity to call this API.")
        if k.require_key is not None and api_key != k.require_key:
            return 400, {}, invalid_key()
        if k.down:
            return 503, {}, error_body(503)
        if k.daily_quota_exhausted:
            return self._too_many(DAY_QUOTA_ID, k.retry_delay_s)
        if k.rpm_limit:  # None or 0: no limit
            wait = self.stats.admit(k.rpm_limit, k.rpm_window_s, time.monotonic())
            if wait > 0:
                return self._too_many(MINUTE_QUOTA_ID, math.ceil(wait * 1000) / 1000)
        if not contents or not isinstance(body, dict):
            return 400, {}, error_body(400, "* GenerateContentRequest.contents: contents is not "
                                       "specified")
        rng = None
        if k.error_rate > 0 or k.jitter_ms > 0:
            rng = random.Random(f"{k.seed}:{prompt}:{seen}")
        if k.hold_until_in_flight:
            await self._hold()
        await delay(k, rng)
        if any(s in prompt for s in k.fail_permanently):
            return 400, {}, error_body(400)
        if fails_now(prompt, seen, k.fail_times):
            return 503, {}, error_body(503)
        status = drawn_error(k, rng)
        if status == 429:
            return self._too_many(MINUTE_QUOTA_ID, k.retry_delay_s)
        if status is not None:
            return status, {}, error_body(status)
        try:
            documents = self.files.documents(contents[-1])
        except PartError as exc:
            return exc.status, {}, error_body(exc.status, exc.message)
        return 200, {}, self._answer(model, body, contents, prompt, documents)

    def _too_many(self, quota_id: str, delay_s: float) -> tuple[int, dict, dict]:
        headers = {"Retry-After": str(math.ceil(delay_s))} if self.knobs.retry_after_header else {}
        return 429, headers, _quota_error(quota_id, delay_s)

    def _answer(self, model: str, body: dict, contents: list, prompt: str,
                documents: list[tuple[str, bytes]] = ()) -> dict:
        k = self.knobs
        config = body.get("generationConfig") or {}
        prompt_tokens = sum(_words(text_of(c)) for c in contents) + 258 * len(documents)
        prompt_tokens += _words(text_of(body.get("systemInstruction")))
        self._responses += 1
        reply: dict[str, Any] = {"modelVersion": model, "responseId": f"fake-{self._responses:x}"}
        usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
        if any(s in prompt for s in k.block_safety):
            reply["promptFeedback"] = {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]}
            return {**reply, "usageMetadata": usage}
        candidate: dict[str, Any] = {"content": {"role": "model"}, "finishReason": "STOP",
                                     "index": 0}
        if any(s in prompt for s in k.finish_safety):
            candidate = {"finishReason": "SAFETY", "index": 0, "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                 "blocked": True}]}
        elif not any(s in prompt for s in k.empty_answer):
            turn = (len(contents) + 1) // 2
            schema = structured.schema_of(config)
            if config.get("responseMimeType") == "application/json" and k.demo_answers:
                text = json.dumps(demo.json_answer(prompt, schema))
            elif config.get("responseMimeType") == "application/json" and schema is not None:
                turns = [(c.get("role", "user"), text_of(c)) for c in contents
                         if isinstance(c, dict)]
                text = structured.answer_text(
                    schema, turns, invalid_once=k.json_invalid_once,
                    invalid_always=k.json_invalid_always, mismatch=k.json_mismatch)
            elif config.get("responseMimeType") == "application/json":
                text = json.dumps({"echo": prompt})
            else:
                answer = demo.text_answer(prompt) if k.demo_answers else "ECHO: " + prompt
                text = (f"[turn {turn}] " if turn > 1 else "") + answer
                text += "".join(" " + describe(mime, data) for mime, data in documents)
                limit = config.get("maxOutputTokens")
                if limit and _words(text) > limit:
                    text = " ".join(text.split()[:limit])
                    candidate["finishReason"] = "MAX_TOKENS"
            candidate["content"]["parts"] = [{"text": text}]
            tools = grounding.requested_tools(body)
            if tools:
                candidate.update(grounding.metadata(tools, prompt, text, k.grounding_sources))
            usage["candidatesTokenCount"] = _words(text)
            usage["totalTokenCount"] = prompt_tokens + _words(text)
            thought = thoughts(config, k.thinking_tokens)
            if thought:
                usage["thoughtsTokenCount"] = thought
                usage["totalTokenCount"] += thought
        return {"candidates": [candidate], "usageMetadata": usage, **reply}
