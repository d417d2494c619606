"""The fake's Gemini Batch Mode, shaped after Google's REST API (what google-genai calls):

- `POST /v1beta/models/{model}:batchGenerateContent` with `{"batch": {"displayName": ...,
  "inputConfig": {"requests": {"requests": [{"request": {...}, "metadata": {"key": ...}}]}}}}`
  (inline) or `{"inputConfig": {"fileName": "files/..."}}` (a JSONL file of
  `{"key": ..., "request": {...}}` lines uploaded through the Files API) answers an operation
  `{"name": "batches/{id}", "metadata": {"state": "BATCH_STATE_PENDING", ...}, "done": false}`;
- `GET /v1beta/batches/{id}`, `GET /v1beta/batches`, `POST /v1beta/batches/{id}:cancel`,
  `DELETE /v1beta/batches/{id}`;
- an ended job's `metadata.output` holds `inlinedResponses` (inline input; each response
  carries its request's metadata) or `responsesFile` ("files/{id}", JSONL lines
  `{"key": ..., "response": {...}}` or `{"key": ..., "error": {...}}`), downloaded with
  `GET /v1beta/files/{id}:download?alt=media`.

A job's state follows the clock (knobs batch_pending_s, batch_running_s); its answers are the
same as generateContent's (answers.GeminiAnswers). A job cancelled while RUNNING keeps the
answers of the share of its running time that had passed. Imports nothing from batches but
the fake's own modules.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batches.fake_gemini.answers import GeminiAnswers, error_body, text_of
from batches.fake_gemini.files import FakeFiles, PartError, _rfc3339
from batches.fake_gemini.knobs import Knobs

OPEN = ("PENDING", "RUNNING")
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"


@dataclass
class _Job:
    id: str
    model: str
    display_name: str
    requests: list[tuple[str, dict]]  # (key, GenerateContentRequest as JSON)
    inline: bool
    created: float
    pending_s: float
    running_s: float
    behaviour: str = "normal"  # "stuck", "expire" or "all_failed"
    state: str = "PENDING"
    ended: float | None = None
    output: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"batches/{self.id}"


class FakeBatches:
    def __init__(self, knobs: Knobs, files: FakeFiles, answers: GeminiAnswers) -> None:
        self.knobs = knobs
        self.files = files
        self.answers = answers
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._seen: Counter[str] = Counter()  # times each key was answered in a job
        self.counts: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            for job in self._jobs.values():
                self._advance(job)
            return {**self.counts,
                    "jobs": {j.name: {"state": j.state, "rows": len(j.requests),
                                      "inline": j.inline, "behaviour": j.behaviour}
                             for j in self._jobs.values()}}

    # Routes ---------------------------------------------------------------------------------

    def create(self, model: str, body: bytes) -> tuple[int, dict, dict]:
        try:
            batch = (json.loads(body or b"{}").get("batch")) or {}
            source = batch.get("inputConfig") or {}
        except (ValueError, AttributeError):
            return 400, {}, error_body(400, "Invalid JSON payload received.")
        if len(body) > self.knobs.batch_inline_max_bytes and "requests" in source:
            return 400, {}, error_body(400, "Request payload size exceeds the limit: "
                                            f"{self.knobs.batch_inline_max_bytes} bytes.")
        if "fileName" in source:
            requests = self._file_requests(str(source["fileName"]))
            if requests is None:
                return 400, {}, error_body(400, f"File {source['fileName']} not found.")
            inline = False
        else:
            items = (source.get("requests") or {}).get("requests")
            if not isinstance(items, list) or not items:
                return 400, {}, error_body(400, "* BatchGenerateContentRequest.batch.input_config"
                                                ": requests or file_name is required")
            requests = [(str((item.get("metadata") or {}).get("key", i)), item.get("request")
                         or {}) for i, item in enumerate(items)]
            inline = True
        k = self.knobs
        with self._lock:
            behaviour = "normal"
            for knob, name in (("batch_stuck_jobs", "stuck"), ("batch_expire_jobs", "expire"),
                               ("batch_all_failed_jobs", "all_failed")):
                if getattr(k, knob) > 0:
                    setattr(k, knob, getattr(k, knob) - 1)
                    behaviour = name
                    break
            job = _Job(uuid.uuid4().hex[:16], model, str(batch.get("displayName") or ""),
                       requests, inline, time.time(), k.batch_pending_s, k.batch_running_s,
                       behaviour)
            self._jobs[job.id] = job
            self.counts["created"] += 1
            self.counts["rows_submitted"] += len(requests)
            return 200, {}, self._resource(job)

    def get(self, job_id: str) -> tuple[int, dict, dict]:
        with self._lock:
            job = self._current(job_id)
            if job is None:
                return _not_found(job_id)
            return 200, {}, self._resource(job)

    def list(self) -> tuple[int, dict, dict]:
        with self._lock:
            for job in self._jobs.values():
                self._advance(job)
            return 200, {}, {"operations": [self._resource(j) for j in self._jobs.values()]}

    def cancel(self, job_id: str) -> tuple[int, dict, dict]:
        with self._lock:
            job = self._current(job_id)
            if job is None:
                return _not_found(job_id)
            if job.state in OPEN:
                done = 0.0
                if job.state == "RUNNING" and job.behaviour != "stuck":
                    running_for = time.time() - job.created - job.pending_s
                    done = min(1.0, running_for / job.running_s) if job.running_s else 1.0
                self._finish(job, "CANCELLED", share=done)
                self.counts["cancelled"] += 1
            return 200, {}, {}

    def delete(self, job_id: str) -> tuple[int, dict, dict]:
        with self._lock:
            job = self._current(job_id)
            if job is None:
                return _not_found(job_id)
            if job.state in OPEN:
                self._finish(job, "CANCELLED", share=0.0)
            del self._jobs[job_id]
            self.counts["deleted"] += 1
            return 200, {}, {}

    # The job's life -------------------------------------------------------------------------

    def _current(self, job_id: str) -> _Job | None:
        """The job brought up to date, or None; the caller holds the lock."""
        job = self._jobs.get(job_id)
        if job is not None:
            self._advance(job)
        return job

    def _advance(self, job: _Job) -> None:
        if job.state not in OPEN or job.behaviour == "stuck":
            return
        elapsed = time.time() - job.created
        if elapsed < job.pending_s:
            return
        if elapsed < job.pending_s + job.running_s:
            job.state = "RUNNING"
            return
        if job.behaviour == "expire":
            self._finish(job, "EXPIRED", share=0.0)
        else:
            self._finish(job, "SUCCEEDED", share=1.0)

    def _finish(self, job: _Job, state: str, *, share: float) -> None:
        """End the job; the first `share` of its rows were answered (or errored) by then."""
        job.state, job.ended = state, time.time()
        done = job.requests[:int(len(job.requests) * share)]
        k = self.knobs
        lines: list[dict] = []
        for key, request in done:
            seen = self._seen[key]
            self._seen[key] = seen + 1
            rng = random.Random(f"{k.seed}:batch:{key}:{seen}")
            if rng.random() < k.batch_missing_rate:
                continue
            if job.behaviour == "all_failed":
                lines.append({"key": key, "error": _row_error(500)})
            elif rng.random() < k.batch_error_rate:
                lines.append({"key": key, "error": _row_error(503)})
            else:
                lines.append(self._answer(job.model, key, request))
        if k.batch_shuffle:
            random.Random(f"{k.seed}:{job.id}").shuffle(lines)
        failed = sum(1 for line in lines if "error" in line)
        job.stats = {"requestCount": str(len(job.requests)),
                     "successfulRequestCount": str(len(lines) - failed),
                     "failedRequestCount": str(failed),
                     "pendingRequestCount": "0"}
        self.counts["rows_answered"] += len(lines) - failed
        if job.inline:
            job.output = {"inlinedResponses": {"inlinedResponses": [
                {**{n: v for n, v in line.items() if n != "key"},
                 "metadata": {"key": line["key"]}} for line in lines]}}
        else:
            data = "".join(json.dumps(line) + "\n" for line in lines).encode()
            file_id = self.files.add(f"{job.name}-results", "application/jsonl", data)
            job.output = {"responsesFile": f"files/{file_id}"}
        job.requests = []  # answered; the fake keeps no copy of a finished job's input

    def _answer(self, model: str, key: str, request: dict) -> dict:
        contents = request.get("contents") or []
        if not contents:
            return {"key": key, "error": _row_error(400, "contents is not specified")}
        prompt = text_of(contents[-1])
        if any(s in prompt for s in self.knobs.fail_permanently):
            return {"key": key, "error": _row_error(400)}
        try:
            documents = self.files.documents(contents[-1])
        except PartError as exc:
            return {"key": key, "error": _row_error(exc.status, exc.message)}
        return {"key": key, "response": self.answers._answer(model, request, contents, prompt,
                                                             documents)}

    def _file_requests(self, file_name: str) -> list[tuple[str, dict]] | None:
        data = self.files.content(file_name.rsplit("/", 1)[-1])
        if data is None:
            return None
        requests = []
        for i, line in enumerate(data.splitlines()):
            if line.strip():
                item = json.loads(line)
                requests.append((str(item.get("key", i)), item.get("request") or {}))
        return requests

    def _resource(self, job: _Job) -> dict:
        metadata: dict[str, Any] = {
            "@type": _TYPE, "name": job.name, "model": f"models/{job.model}",
            "displayName": job.display_name, "state": f"BATCH_STATE_{job.state}",
            "createTime": _rfc3339(job.created), "updateTime": _rfc3339(job.ended or time.time()),
        }
        if job.ended is not None:
            metadata["endTime"] = _rfc3339(job.ended)
            metadata["batchStats"] = job.stats
            metadata["output"] = job.output
        resource: dict[str, Any] = {"name": job.name, "metadata": metadata,
                                    "done": job.ended is not None}
        if job.ended is not None:
            resource["response"] = {"@type": _TYPE + "Output", **job.output}
        return resource


def _row_error(code: int, message: str | None = None) -> dict:
    body = error_body(code, message)["error"]
    return {"code": body["code"], "message": body["message"], "status": body.get("status", "")}


def _not_found(job_id: str) -> tuple[int, dict, dict]:
    return 404, {}, error_body(404, f"Batch batches/{job_id} not found.")
