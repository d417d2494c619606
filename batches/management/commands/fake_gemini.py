"""Serve the fake Gemini API locally, for demos and benchmarks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from batches.fake_gemini import CONTROL_HEADER, run_forever
from batches.management.fake_server import FakeServerCommand


class Command(FakeServerCommand):
    help = "Serve a local Gemini-compatible API (deterministic answers) until Ctrl-C."
    default_port = 8765
    control_header = CONTROL_HEADER
    control_key_env = "FAKE_GEMINI_CONTROL_KEY"
    knob_names = ("rpm_limit", "rpm_window_s", "retry_delay_s", "retry_after_header",
                  "daily_quota_exhausted", "log_limit", "thinking_tokens", "batch_pending_s",
                  "batch_running_s")
    serve = staticmethod(run_forever)

    def add_fake_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rpm-limit", type=int, default=None)
        parser.add_argument("--rpm-window-s", type=float, default=60.0)
        parser.add_argument("--retry-delay-s", type=float, default=2.0)
        parser.add_argument("--retry-after-header", action="store_true")
        parser.add_argument("--daily-quota-exhausted", action="store_true")
        parser.add_argument("--log-limit", type=int, default=100_000,
                            help="Request log entries kept for GET /_stats?log=1.")
        parser.add_argument("--thinking-tokens", type=int, default=0,
                            help="Thinking tokens an answer reports when the request leaves "
                                 "thinking to the model (a thinking budget caps it).")
        parser.add_argument("--batch-pending-s", type=float, default=0.0,
                            help="Batch Mode: seconds a job stays PENDING.")
        parser.add_argument("--batch-running-s", type=float, default=0.0,
                            help="Batch Mode: seconds a job then stays RUNNING.")

    def announce(self, url: str, knobs: dict[str, Any], shown_key: str) -> None:
        self.stdout.write(f"Fake Gemini serving on {url}")
        self.stdout.write(f"  export GEMINI_BASE_URL={url} GEMINI_API_KEY=fake-key")
        self.stdout.write(f"  stats: curl -H '{CONTROL_HEADER}: {shown_key}' {url}/_stats   "
                          f"steer: curl -H '{CONTROL_HEADER}: {shown_key}' -d "
                          f"'{{\"down\": true}}' {url}/_config   Ctrl-C stops.")
