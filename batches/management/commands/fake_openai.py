"""Serve the fake OpenAI-compatible API locally, for demos and trying the second provider."""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from batches.fake_openai import CONTROL_HEADER, new_control_key, run_forever
from batches.management.commands.fake_gemini import _is_loopback


class Command(BaseCommand):
    help = "Serve a local OpenAI-compatible API (deterministic answers) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1",
                            help="Address to bind (loopback unless you mean otherwise).")
        parser.add_argument("--port", type=int, default=8766, help="0 picks a free port.")
        parser.add_argument("--models", default="",
                            help="Comma-separated models served (others answer 404); empty: "
                                 "any model.")
        parser.add_argument("--latency-ms", type=float, default=0.0)
        parser.add_argument("--jitter-ms", type=float, default=0.0)
        parser.add_argument("--error-rate", type=float, default=0.0,
                            help="Share of requests answered 500/503/429.")
        parser.add_argument("--error-mix", type=json.loads, default=None,
                            help='JSON weights by status, e.g. \'{"429": 1}\'.')
        parser.add_argument("--retry-after-s", type=float, default=1.0,
                            help="Retry-After of a 429, in seconds.")
        parser.add_argument("--require-key", default=None,
                            help="The only API key accepted (default: any non-empty key).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--demo-answers", action="store_true",
                            help="Plausible answers (a sentiment, a reason) instead of the echo.")
        parser.add_argument("--control-key", default=os.environ.get("FAKE_OPENAI_CONTROL_KEY"),
                            help="Key for /_stats, /_reset and /_config, sent in the "
                                 f"{CONTROL_HEADER} header (default: $FAKE_OPENAI_CONTROL_KEY, "
                                 "else a random key printed at start).")

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"]
        if not _is_loopback(host):
            self.stderr.write(f"Warning: binding {host}, reachable beyond this machine.")
        knobs = {name: options[name] for name in (
            "latency_ms", "jitter_ms", "error_rate", "retry_after_s", "require_key", "seed",
            "demo_answers")}
        knobs["models"] = tuple(m.strip() for m in options["models"].split(",") if m.strip())
        if options["error_mix"]:
            knobs["error_mix"] = options["error_mix"]
        control_key = options["control_key"] or new_control_key()
        given = bool(options["control_key"])

        def ready(url: str) -> None:
            models = ",".join(knobs["models"]) or "gpt-4o-mini"
            self.stdout.write(f"Fake OpenAI-compatible API serving on {url}")
            self.stdout.write(f"  export OPENAI_BASE_URL={url} OPENAI_API_KEY=fake-key "
                              f"OPENAI_MODELS={models}")
            key = "$FAKE_OPENAI_CONTROL_KEY" if given else control_key
            root = url.removesuffix("/v1")
            self.stdout.write(f"  stats: curl -H '{CONTROL_HEADER}: {key}' {root}/_stats   "
                              "Ctrl-C stops.")
            self.stdout.flush()

        run_forever(host, options["port"], on_ready=ready, control_key=control_key, **knobs)
