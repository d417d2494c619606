"""Serve the fake OpenAI-compatible API locally, for demos and trying the second provider."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from batches.fake_openai import CONTROL_HEADER, run_forever
from batches.management.fake_server import FakeServerCommand


class Command(FakeServerCommand):
    help = "Serve a local OpenAI-compatible API (deterministic answers) until Ctrl-C."
    default_port = 8766
    control_header = CONTROL_HEADER
    control_key_env = "FAKE_OPENAI_CONTROL_KEY"
    knob_names = ("retry_after_s",)
    serve = staticmethod(run_forever)

    def add_fake_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--models", default="",
                            help="Comma-separated models served (others answer 404); empty: "
                                 "any model.")
        parser.add_argument("--retry-after-s", type=float, default=1.0,
                            help="Retry-After of a 429, in seconds.")

    def knobs(self, options: dict[str, Any]) -> dict[str, Any]:
        knobs = super().knobs(options)
        knobs["models"] = tuple(m.strip() for m in options["models"].split(",") if m.strip())
        return knobs

    def announce(self, url: str, knobs: dict[str, Any], shown_key: str) -> None:
        models = ",".join(knobs["models"]) or "gpt-4o-mini"
        self.stdout.write(f"Fake OpenAI-compatible API serving on {url}")
        self.stdout.write(f"  export OPENAI_BASE_URL={url} OPENAI_API_KEY=fake-key "
                          f"OPENAI_MODELS={models}")
        root = url.removesuffix("/v1")
        self.stdout.write(f"  stats: curl -H '{CONTROL_HEADER}: {shown_key}' {root}/_stats   "
                          "Ctrl-C stops.")
