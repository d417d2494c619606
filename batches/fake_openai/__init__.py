"""A local OpenAI-compatible HTTP server (`POST /v1/chat/completions`, `GET /v1/models`) for
tests and the demo.

Layers, lowest first: knobs (Knobs), answers (what a request gets back), server (FakeOpenAI for
tests, run_forever for `manage.py fake_openai`). It reuses the fake Gemini's HTTP transport,
stats and structured answers, is plain Python on the standard library, and must never import
Django, models or the engine: the real `openai` SDK talks to it over HTTP exactly as it talks
to OpenAI.
"""

from batches.fake_openai.knobs import Knobs
from batches.fake_openai.server import (
    CONTROL_HEADER,
    FakeOpenAI,
    FakeOpenAIApp,
    new_control_key,
    run_forever,
)

__all__ = ["CONTROL_HEADER", "FakeOpenAI", "FakeOpenAIApp", "Knobs", "new_control_key",
           "run_forever"]
