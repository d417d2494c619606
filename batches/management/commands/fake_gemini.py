"""Serve the fake Gemini API locally, for demos and benchmarks."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from batches.fake_gemini import CONTROL_HEADER, new_control_key, run_forever


class Command(BaseCommand):
    help = "Serve a local Gemini-compatible API (deterministic answers) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1",
                            help="Address to bind (loopback unless you mean otherwise).")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port.")
        parser.add_argument("--latency-ms", type=float, default=0.0)
        parser.add_argument("--jitter-ms", type=float, default=0.0)
        parser.add_argument("--error-rate", type=float, default=0.0,
                            help="Fraction of requests answered 500/503/429.")
        parser.add_argument("--error-mix", type=json.loads, default=None,
                            help='JSON weights by status, e.g. \'{"503": 1}\'.')
        parser.add_argument("--rpm-limit", type=int, default=None)
        parser.add_argument("--rpm-window-s", type=float, default=60.0)
        parser.add_argument("--retry-delay-s", type=float, default=2.0)
        parser.add_argument("--retry-after-header", action="store_true")
        parser.add_argument("--daily-quota-exhausted", action="store_true")
        parser.add_argument("--require-key", default=None)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--demo-answers", action="store_true",
                            help="Plausible answers (a sentiment, a reason) instead of the echo.")
        parser.add_argument("--log-limit", type=int, default=100_000,
                            help="Request log entries kept for GET /_stats?log=1.")
        parser.add_argument("--thinking-tokens", type=int, default=0,
                            help="Thinking tokens an answer reports when the request leaves "
                                 "thinking to the model (a thinking budget caps it).")
        parser.add_argument("--batch-pending-s", type=float, default=0.0,
                            help="Batch Mode: seconds a job stays PENDING.")
        parser.add_argument("--batch-running-s", type=float, default=0.0,
                            help="Batch Mode: seconds a job then stays RUNNING.")
        parser.add_argument("--control-key", default=os.environ.get("FAKE_GEMINI_CONTROL_KEY"),
                            help="Key for /_stats, /_reset and /_config, sent in the "
                                 f"{CONTROL_HEADER} header (default: $FAKE_GEMINI_CONTROL_KEY, "
                                 "else a random key printed at start).")

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"]
        if not _is_loopback(host):
            self.stderr.write(f"Warning: binding {host}, reachable beyond this machine.")
        knobs = {name: options[name] for name in (
            "latency_ms", "jitter_ms", "error_rate", "rpm_limit", "rpm_window_s",
            "retry_delay_s", "retry_after_header", "daily_quota_exhausted", "require_key",
            "seed", "log_limit", "demo_answers", "thinking_tokens", "batch_pending_s",
            "batch_running_s",
        )}
        if options["error_mix"]:
            knobs["error_mix"] = options["error_mix"]

        control_key = options["control_key"] or new_control_key()
        given = bool(options["control_key"])

        def ready(url: str) -> None:
            self.stdout.write(f"Fake Gemini serving on {url}")
            self.stdout.write(f"  export GEMINI_BASE_URL={url} GEMINI_API_KEY=fake-key")
            key = "$FAKE_GEMINI_CONTROL_KEY" if given else control_key
            self.stdout.write(f"  stats: curl -H '{CONTROL_HEADER}: {key}' {url}/_stats   "
                              f"steer: curl -H '{CONTROL_HEADER}: {key}' -d "
                              f"'{{\"down\": true}}' {url}/_config   Ctrl-C stops.")
            self.stdout.flush()

        run_forever(host, options["port"], on_ready=ready, control_key=control_key, **knobs)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
