"""Gemini Batch Mode through google-genai's batches and files APIs (sync: these run in
django-q2 tasks, not on a slice's event loop), with errors mapped to the provider's kinds.

A row's request is built exactly as the online provider builds it (gemini._contents, _config:
the same response_json_schema, thinking and system instruction), turned into the REST JSON the
SDK itself sends for an inline request, and keyed by the row id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from google.genai import _common, errors, types
from google.genai import batches as sdk_batches

from batches.providers import PermanentError, Request, Response, RetryableError, gemini

T = TypeVar("T")
OPEN_STATES = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_QUEUED")
RETRYABLE_CODES = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RemoteJob:
    name: str
    state: str
    inline: list | None  # inlined responses as dicts (key, response | error)
    file_name: str | None  # the results file


def _call(fn: Callable[[], T]) -> T:
    provider = gemini.get_provider()
    try:
        return fn()
    # The provider's own mapping (private to it, shared here so both paths judge errors alike).
    except errors.APIError as exc:
        raise provider._api_error(exc) from None
    except gemini._TRANSPORT_ERRORS as exc:
        raise RetryableError(provider._scrub(f"Gemini batch call failed: {exc}")) from None


def _client():
    return gemini.get_provider()._client


def request_line(request: Request, key: str) -> dict:
    """One row as the REST JSON of an inlined request: {"request": {...}, "metadata": {key}},
    exactly as the SDK converts it (about 2 ms a row: `Lines` builds a batch's rows faster)."""
    inlined = types.InlinedRequest(model=request.model, contents=gemini._contents(request),
                                   config=gemini._config(request), metadata={"key": key})
    body = sdk_batches._InlinedRequest_to_mldev(_client()._api_client, inlined)
    return _common.encode_unserializable_types(_common.convert_to_dict(body))


class Lines:
    """A batch's requests, which differ only in their turns: the SDK converts the shared part
    (model, generation config, system instruction) once, each row adds its own text turns in
    the same REST form (a test checks that the two agree)."""

    def __init__(self, template: Request) -> None:
        self.config = gemini._config(template)
        self.base = request_line(template, "")["request"]
        self.base.pop("contents", None)

    def contents(self, request: Request) -> list[dict]:
        turns = []
        for prompt, answer in request.history:
            turns += [{"role": "user", "parts": [{"text": prompt}]},
                      {"role": "model", "parts": [{"text": answer}]}]
        return turns + [{"role": "user", "parts": [{"text": request.prompt}]}]

    def file_line(self, contents: list[dict], key: str) -> str:
        """A JSONL line of the input file: {"key", "request"}."""
        return json.dumps({"key": key, "request": {**self.base, "contents": contents}},
                          ensure_ascii=False)

    def inlined(self, contents: list[dict], key: str) -> types.InlinedRequest:
        return types.InlinedRequest(contents=contents, config=self.config, metadata={"key": key})


def create_inline(model: str, requests: list[types.InlinedRequest],
                  display_name: str) -> RemoteJob:
    """A job whose requests travel in the create call itself."""
    job = _call(lambda: _client().batches.create(
        model=model, src=types.BatchJobSource(inlined_requests=requests),
        config=types.CreateBatchJobConfig(display_name=display_name)))
    return _remote(job)


def upload_jsonl(path: str, display_name: str) -> str:
    """Upload a JSONL file of {"key", "request"} lines; returns its name ("files/...")."""
    uploaded = _call(lambda: _client().files.upload(
        file=path, config=types.UploadFileConfig(mime_type="application/jsonl",
                                                 display_name=display_name[:512])))
    return str(uploaded.name)


def create_from_file(model: str, file_name: str, display_name: str) -> RemoteJob:
    job = _call(lambda: _client().batches.create(
        model=model, src=file_name,
        config=types.CreateBatchJobConfig(display_name=display_name)))
    return _remote(job)


def get(name: str) -> RemoteJob:
    return _remote(_call(lambda: _client().batches.get(name=name)))


def cancel(name: str) -> None:
    _call(lambda: _client().batches.cancel(name=name))


def delete(name: str) -> None:
    _call(lambda: _client().batches.delete(name=name))


def download(file_name: str, destination: str) -> None:
    """Stream a results file to disk (never whole into memory)."""
    _call(lambda: _client().files.download(file=file_name, destination=destination))


def _remote(job: types.BatchJob) -> RemoteJob:
    state = gemini._name(job.state) if job.state else "JOB_STATE_UNSPECIFIED"
    inline = file_name = None
    if job.dest is not None:
        file_name = job.dest.file_name
        if job.dest.inlined_responses is not None:
            inline = [_inline_item(r) for r in job.dest.inlined_responses]
    return RemoteJob(name=str(job.name), state=state, inline=inline, file_name=file_name)


def _inline_item(item: types.InlinedResponse) -> dict:
    key = str((item.metadata or {}).get("key", ""))
    if item.error is not None:
        return {"key": key, "error": item.error.model_dump(exclude_none=True)}
    return {"key": key, "reply": item.response}


def read_lines(path: str) -> Iterator[dict]:
    """The results file line by line: {"key", "response" | "error"}."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def response_of(item: dict, model: str) -> Response:
    """A result line's answer as the provider's Response; PermanentError / RetryableError for a
    per-row error, a blocked prompt or an empty answer (as online)."""
    error = item.get("error")
    if error:
        code = int(error.get("code") or 0)
        message = f"Gemini batch row error {code} {error.get('status', '')}: " \
                  f"{str(error.get('message', ''))[:500]}"
        if code in RETRYABLE_CODES or code >= 500:
            raise RetryableError(message, status=code)
        raise PermanentError(message, status=code or None)
    reply = item.get("reply")
    if reply is not None:
        return gemini._response(reply, model)
    raw = item.get("response")
    if not isinstance(raw, dict):
        raise RetryableError("The batch result line had neither a response nor an error.")
    return _response_from_json(raw, model)


def _response_from_json(raw: dict, model: str) -> Response:
    """gemini._response on the REST JSON of a result line: building the SDK's response type
    costs about 3 ms a row, which a 100,000-row results file cannot afford."""
    reason = (raw.get("promptFeedback") or {}).get("blockReason")
    if reason:
        raise PermanentError(f"The prompt was blocked (block reason: {reason})")
    candidates = raw.get("candidates") or []
    candidate = candidates[0] if candidates else {}
    finish = candidate.get("finishReason") or "NONE"
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(p["text"] for p in parts
                   if isinstance(p, dict) and p.get("text") and not p.get("thought"))
    if not text:
        raise PermanentError(f"The model returned no text (finish reason: {finish})")
    usage = raw.get("usageMetadata")
    def count(name: str) -> int | None:
        return usage.get(name) if usage is not None else None
    return Response(text=text, finish_reason=str(finish),
                    prompt_tokens=count("promptTokenCount"),
                    output_tokens=count("candidatesTokenCount"),
                    model_version=raw.get("modelVersion") or model,
                    thoughts_tokens=count("thoughtsTokenCount"),
                    cached_tokens=count("cachedContentTokenCount"))
