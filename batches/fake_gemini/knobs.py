"""The fake Gemini server's knobs (behaviour, changeable at run time) and its thread-safe
stats. The lowest module of the package: it imports nothing from batches but the knobs every
fake shares (batches.fakes)."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from batches.fakes import BaseKnobs


@dataclass
class Knobs(BaseKnobs):
    """Behaviour of the fake; every field can be changed at run time."""

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
    # Structured output: markers in a prompt that spoil its JSON answer (see structured.py).
    json_invalid_once: tuple[str, ...] = ()
    json_invalid_always: tuple[str, ...] = ()
    json_mismatch: tuple[str, ...] = ()
    down: bool = False
    # Hold every request until this many are in flight at once (0: off; at most HOLD_MAX_S), so
    # a test of concurrency waits on the server's state instead of racing the clock.
    hold_until_in_flight: int = 0
    require_key: str | None = None
    # Files API: an upload whose display name contains one of these fails once (503).
    fail_upload_once: tuple[str, ...] = ()
    file_ttl_s: float = 48 * 3600
    seed: int = 0
    # `make demo`: plausible answers (fake_gemini/demo.py) instead of the echo tests rely on.
    demo_answers: bool = False
    log_limit: int = 100_000
    # Thinking tokens an answer reports when the request leaves thinking to the model; a
    # thinking budget (or level) caps it, a budget of 0 turns it off.
    thinking_tokens: int = 0
    # Batch Mode (batchjobs.py): seconds a job stays PENDING, then RUNNING, before it ends;
    # results in shuffled order; shares of rows missing from the results or answered with a
    # per-row error (decided per row and per time the fake saw it); and the next N jobs
    # created stay PENDING for ever, expire, or report SUCCEEDED with every row failed.
    batch_pending_s: float = 0.0
    batch_running_s: float = 0.0
    batch_shuffle: bool = False
    batch_missing_rate: float = 0.0
    batch_error_rate: float = 0.0
    batch_stuck_jobs: int = 0
    batch_expire_jobs: int = 0
    batch_all_failed_jobs: int = 0
    batch_inline_max_bytes: int = 20 * 1024 * 1024
    # Grounding: web sources every google_search answer cites ([{"uri", "title"}]) instead of
    # the ones made up from the prompt (grounding.py); for tests of hostile or odd sources.
    grounding_sources: tuple[dict, ...] = ()

    _TUPLES = ("fail_permanently", "block_safety", "finish_safety", "empty_answer",
               "fail_upload_once", "json_invalid_once", "json_invalid_always", "json_mismatch")
    _COUNTS = ("fail_times",)

    def _coerce(self, name: str, value: Any) -> Any:
        if name == "grounding_sources":
            return tuple({"uri": str(d.get("uri", "")), "title": str(d.get("title", ""))}
                         for d in value)
        return super()._coerce(name, value)


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
