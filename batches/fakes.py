"""What the fake servers (fake_gemini, fake_openai) share: the knobs every fake has, the delay
and the errors a request is dealt from them, the control routes, and serving until Ctrl-C.

Plain Python on the standard library, like the fakes themselves: it must never import Django,
models, the engine, or either fake.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass
class BaseKnobs:
    """The knobs every fake has; a fake's own dataclass adds its fields after these. Every
    field can be changed at run time (POST /_config)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    # Share of requests answered with an error, and the statuses drawn (weights).
    error_rate: float = 0.0
    error_mix: dict[int, float] = field(default_factory=dict)

    # Fields given as a string or a list that are kept as tuples (of prompt markers, mostly).
    _TUPLES: ClassVar[tuple[str, ...]] = ()
    # Fields of {prompt marker: how many times the prompt fails}.
    _COUNTS: ClassVar[tuple[str, ...]] = ()

    def update(self, **changes: Any) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            setattr(self, name, self._coerce(name, value))

    def _coerce(self, name: str, value: Any) -> Any:
        """A knob's value as JSON or the command line gave it, in the type the fake reads."""
        if name in self._TUPLES:
            return (value,) if isinstance(value, str) else tuple(value)
        if name == "error_mix":
            return {int(k): float(v) for k, v in value.items()}
        if name in self._COUNTS:
            return {str(k): int(v) for k, v in value.items()}
        return value

    def __post_init__(self) -> None:
        self.update(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


async def delay(knobs: BaseKnobs, rng: random.Random | None) -> None:
    """Wait the knobs' latency, give or take their jitter (`rng` is needed only with jitter)."""
    jitter = rng.uniform(-knobs.jitter_ms, knobs.jitter_ms) if knobs.jitter_ms else 0
    delay_ms = knobs.latency_ms + jitter
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000)


def fails_now(prompt: str, seen: int, counts: Mapping[str, int]) -> bool:
    """Whether a marker in the prompt still fails it, the prompt having been seen `seen` times."""
    return any(s in prompt and seen < n for s, n in counts.items())


def drawn_error(knobs: BaseKnobs, rng: random.Random | None) -> int | None:
    """The error status the knobs' error rate deals this request, or None."""
    if rng is None or not (knobs.error_rate > 0 and rng.random() < knobs.error_rate):
        return None
    statuses = list(knobs.error_mix)
    return rng.choices(statuses, weights=[knobs.error_mix[s] for s in statuses])[0]


CONTROL_ROUTES = ("/_stats", "/_reset", "/_config")


def new_control_key() -> str:
    return secrets.token_urlsafe(24)


class ControlRoutes:
    """A fake app's control routes (GET /_stats, POST /_reset, GET or POST /_config), answered
    only to a request carrying the app's control key in its `control_header`."""

    control_header: str
    error_body: Callable[..., dict]  # the fake's own error body, from (status, message)

    def __init__(self, knobs: BaseKnobs, stats: Any, control_key: str | None) -> None:
        self.knobs = knobs
        self.stats = stats  # the fake Gemini's Stats
        self.control_key = control_key or new_control_key()

    def control(self, method: str, path: str, query: dict[str, list[str]],
                headers: dict[str, str], body: bytes) -> tuple[int, dict, dict] | None:
        """The answer of a control route, or None when the request is for none of them."""
        if path not in CONTROL_ROUTES:
            return None
        if not hmac.compare_digest(headers.get(self.control_header, "").encode(),
                                   self.control_key.encode()):
            return 403, {}, self.error_body(403, "The control routes need the server's key in "
                                                 f"the {self.control_header} header.")
        if method == "GET" and path == "/_stats":
            flag = lambda name: query.get(name, ["0"])[0] not in ("0", "", "false")  # noqa: E731
            return 200, {}, self.stats_snapshot(prompts=flag("prompts"), log=flag("log"))
        if method == "POST" and path == "/_reset":
            self.stats.reset()
            return 200, {}, {"ok": True}
        if path == "/_config" and method in ("GET", "POST"):
            if method == "POST":
                try:
                    self.knobs.update(**json.loads(body or b"{}"))
                except (ValueError, TypeError, AttributeError) as exc:
                    return 400, {}, self.error_body(400, str(exc))
            return 200, {}, dataclasses.asdict(self.knobs)
        return None

    def stats_snapshot(self, *, prompts: bool, log: bool) -> dict[str, Any]:
        return self.stats.snapshot(prompts=prompts, log=log)


class Server(Protocol):
    async def start(self, host: str, port: int) -> int: ...

    async def stop(self) -> None: ...


def serve_forever(make_server: Callable[[], Server], host: str, port: int,
                  on_ready: Callable[[str], None] | None = None, *, path: str = "") -> None:
    """Serve in this thread until interrupted (Ctrl-C); `on_ready` gets the URL (+ `path`)."""

    async def main() -> None:
        server = make_server()
        bound = await server.start(host, port)
        if on_ready is not None:
            on_ready(f"http://{host}:{bound}{path}")
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
