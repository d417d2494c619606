"""Prices: which `ModelPrice` applies to a model at a time, and what an answer cost."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from batches.costs.money import NANO
from batches.models import ModelPrice

MILLION = Decimal(1_000_000)
CACHE_S = 30.0  # a worker looks a model's prices up at most this often


@dataclass(frozen=True)
class Price:
    model: str
    currency: str
    input: Decimal
    output: Decimal
    thinking: Decimal
    cached_input: Decimal
    batch_discount_percent: Decimal
    long_context_threshold: int | None
    long_input: Decimal
    long_output: Decimal
    long_thinking: Decimal
    long_cached_input: Decimal

    @classmethod
    def from_row(cls, row: ModelPrice) -> Price:
        cached = row.cached_input_per_million
        long_input = row.long_input_per_million or row.input_per_million
        long_output = row.long_output_per_million or row.output_per_million
        return cls(
            model=row.model, currency=row.currency,
            input=row.input_per_million, output=row.output_per_million,
            thinking=row.thinking_per_million or row.output_per_million,
            cached_input=cached if cached is not None else row.input_per_million,
            batch_discount_percent=row.batch_discount_percent,
            long_context_threshold=row.long_context_threshold,
            long_input=long_input, long_output=long_output,
            long_thinking=row.thinking_per_million or long_output,
            long_cached_input=(row.long_cached_input_per_million
                               or (cached if cached is not None else long_input)),
        )

    def cost(self, *, prompt: int = 0, candidates: int = 0, thoughts: int = 0,
             cached: int = 0, batch_mode: bool = False) -> Decimal:
        """What one answer costs. `prompt` includes the `cached` tokens, as Gemini reports."""
        long = self.long_context_threshold is not None and prompt > self.long_context_threshold
        rates = ((self.long_input, self.long_cached_input, self.long_output, self.long_thinking)
                 if long else (self.input, self.cached_input, self.output, self.thinking))
        cached = min(cached, prompt)
        total = ((prompt - cached) * rates[0] + cached * rates[1] + candidates * rates[2]
                 + thoughts * rates[3]) / MILLION
        if batch_mode:
            total = total * (100 - self.batch_discount_percent) / 100
        return total.quantize(NANO)


_lock = threading.Lock()
_cache: dict[str, tuple[float, list[Price], list[datetime]]] = {}


def price_for(model: str, at: datetime | None = None) -> Price | None:
    """The price valid for `model` at `at` (default now), or None when none is known."""
    at = at or timezone.now()
    now = time.monotonic()
    with _lock:
        hit = _cache.get(model)
    if hit is None or now - hit[0] > CACHE_S:
        rows = list(ModelPrice.objects.filter(model=model).order_by("-valid_from"))
        hit = (now, [Price.from_row(r) for r in rows], [r.valid_from for r in rows])
        with _lock:
            _cache[model] = hit
    for price, valid_from in zip(hit[1], hit[2], strict=True):
        if valid_from <= at:
            return price
    return None


def clear_price_cache() -> None:
    """Forget looked-up prices (after an edit in this process, and in tests)."""
    with _lock:
        _cache.clear()
