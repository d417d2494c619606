"""What the commands serving a fake (fake_gemini, fake_openai) share: the arguments every fake
takes, the warning when bound beyond this machine, the control key, and serving until Ctrl-C."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from batches.fakes import new_control_key

# Knobs every fake takes from its command line under the same name.
SHARED_KNOBS = ("latency_ms", "jitter_ms", "error_rate", "require_key", "seed", "demo_answers")


class FakeServerCommand(BaseCommand):
    """Serve one fake until Ctrl-C; a subclass adds its own arguments and knobs and says how
    to use the URL."""

    default_port: int
    control_header: str
    control_key_env: str  # the environment variable that holds the control key
    knob_names: tuple[str, ...] = ()  # the fake's own knobs, as argparse names them
    serve: Callable[..., None]  # the fake's run_forever, as a staticmethod

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1",
                            help="Address to bind (loopback unless you mean otherwise).")
        parser.add_argument("--port", type=int, default=self.default_port,
                            help="0 picks a free port.")
        parser.add_argument("--latency-ms", type=float, default=0.0)
        parser.add_argument("--jitter-ms", type=float, default=0.0)
        parser.add_argument("--error-rate", type=float, default=0.0,
                            help="Share of requests answered 500/503/429.")
        parser.add_argument("--error-mix", type=json.loads, default=None,
                            help='JSON weights by status, e.g. \'{"503": 1}\'.')
        parser.add_argument("--require-key", default=None,
                            help="The only API key accepted (default: any non-empty key).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--demo-answers", action="store_true",
                            help="Plausible answers (a sentiment, a reason) instead of the echo.")
        self.add_fake_arguments(parser)
        env = self.control_key_env
        parser.add_argument("--control-key", default=os.environ.get(env),
                            help="Key for /_stats, /_reset and /_config, sent in the "
                                 f"{self.control_header} header (default: ${env}, "
                                 "else a random key printed at start).")

    def add_fake_arguments(self, parser: CommandParser) -> None:
        """The fake's own arguments."""

    def knobs(self, options: dict[str, Any]) -> dict[str, Any]:
        knobs = {name: options[name] for name in SHARED_KNOBS + self.knob_names}
        if options["error_mix"]:
            knobs["error_mix"] = options["error_mix"]
        return knobs

    def announce(self, url: str, knobs: dict[str, Any], shown_key: str) -> None:
        """Say where the fake serves and how to reach it."""
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"]
        if not is_loopback(host):
            self.stderr.write(f"Warning: binding {host}, reachable beyond this machine.")
        knobs = self.knobs(options)
        control_key = options["control_key"] or new_control_key()
        shown_key = f"${self.control_key_env}" if options["control_key"] else control_key

        def ready(url: str) -> None:
            self.announce(url, knobs, shown_key)
            self.stdout.flush()

        self.serve(host, options["port"], on_ready=ready, control_key=control_key, **knobs)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
