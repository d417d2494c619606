"""The fake OpenAI server's knobs: behaviour, changeable at run time. Imports nothing of batches
but the knobs every fake shares (batches.fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from batches.fakes import BaseKnobs


@dataclass
class Knobs(BaseKnobs):
    """Behaviour of the fake; every field can be changed at run time (POST /_config)."""

    error_mix: dict[int, float] = field(default_factory=lambda: {500: 0.3, 503: 0.3, 429: 0.4})
    # Seconds a 429 asks the client to wait, in its Retry-After header (None: no header).
    retry_after_s: float | None = 1.0
    # A prompt containing a marker is answered 429 (rate_limit_times) or 503 (fail_times) the
    # first n times it is seen; 400 always (fail_permanently).
    rate_limit_times: dict[str, int] = field(default_factory=dict)
    fail_times: dict[str, int] = field(default_factory=dict)
    fail_permanently: tuple[str, ...] = ()
    # The model answers with a refusal (structured outputs) or with no content at all.
    refuse: tuple[str, ...] = ()
    empty_answer: tuple[str, ...] = ()
    # Structured output markers, as the fake Gemini has them (fake_gemini/structured.py).
    json_invalid_once: tuple[str, ...] = ()
    json_invalid_always: tuple[str, ...] = ()
    json_mismatch: tuple[str, ...] = ()
    down: bool = False
    # Models served (GET /v1/models; others answer 404). Empty: any model is served.
    models: tuple[str, ...] = ()
    # The key every request must carry as `Authorization: Bearer <key>` (None: any non-empty).
    require_key: str | None = None
    # Reasoning tokens reported inside completion_tokens, as OpenAI's reasoning models do.
    reasoning_tokens: int = 0
    seed: int = 0
    # `make demo`: plausible answers (the fake Gemini's demo answers) instead of the echo.
    demo_answers: bool = False
    log_limit: int = 100_000

    _TUPLES = ("fail_permanently", "refuse", "empty_answer", "json_invalid_once",
               "json_invalid_always", "json_mismatch", "models")
    _COUNTS = ("fail_times", "rate_limit_times")
