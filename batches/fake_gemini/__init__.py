"""A local Gemini-compatible HTTP server for tests, benchmarks and the demo.

Layers, lowest first: knobs (Knobs, Stats, LogEntry), answers (what a request gets back),
server (the HTTP transport, FakeGemini for tests, run_forever for the command). It is plain
Python on the standard library and must never import Django, models or the engine: the real
google-genai client talks to it over HTTP exactly as it talks to Google.
"""

from batches.fake_gemini.answers import DAY_QUOTA_ID, MINUTE_QUOTA_ID, QUOTA_METRIC
from batches.fake_gemini.knobs import Knobs, LogEntry, Stats
from batches.fake_gemini.server import CONTROL_HEADER, FakeGemini, FakeGeminiApp, run_forever
from batches.fakes import new_control_key

__all__ = [
    "CONTROL_HEADER", "DAY_QUOTA_ID", "MINUTE_QUOTA_ID", "QUOTA_METRIC", "FakeGemini",
    "FakeGeminiApp", "Knobs", "LogEntry", "Stats", "new_control_key", "run_forever",
]
