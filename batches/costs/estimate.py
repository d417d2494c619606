"""The estimate before a run: input tokens from a sample counted by the model's countTokens
(at most MAX_COUNT_CALLS calls, each cached), applied to the exact character count of every
rendered prompt; output as a range; the cost range online and in batch mode; the time."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.core.cache import cache

from batches.costs.budgets import CHARS_PER_TOKEN, THINKING_GUESS_TOKENS
from batches.costs.money import format_money
from batches.costs.prices import Price, price_for
from batches.providers import ProviderError

log = logging.getLogger(__name__)

MAX_COUNT_CALLS = 20
COUNT_CACHE_S = 7 * 86400
ASSUMED_LATENCY_S = 2.0  # seconds per answer, for the time estimate at a batch's concurrency
MODEL_MAX_OUTPUT_TOKENS = 65536  # what a Gemini 2.5 answer may reach without max_output_tokens
MAX_THINKING_TOKENS = {"pro": 32768, "flash": 24576}


@dataclass
class Estimate:
    model: str
    rows: int
    prompt_chars: int
    sampled_rows: int
    method: str  # "count_tokens" or "chars_per_token"
    tokens_per_char: float
    input_tokens: int
    output_tokens_high: int
    thinking_tokens_high: int
    output_tokens_low: int | None = None  # from an earlier run of the same prompt
    seconds: int | None = None
    price: Price | None = None
    notes: list[str] = field(default_factory=list)

    def cost(self, *, high: bool, batch_mode: bool = False) -> Decimal | None:
        if self.price is None:
            return None
        output = self.output_tokens_high if high else (self.output_tokens_low or 0)
        # Costed as one request per row, of the average size: long-context prices apply per
        # request, not to the batch's total.
        per_row = self.rows or 1
        cost = self.price.cost(prompt=self.input_tokens // per_row,
                               candidates=output // per_row,
                               thoughts=(self.thinking_tokens_high if high else 0) // per_row,
                               batch_mode=batch_mode)
        return cost * per_row

    def as_dict(self) -> dict:
        currency = self.price.currency if self.price else None
        costs = {name: self.cost(high=high, batch_mode=batch)
                 for name, high, batch in (("low", False, False), ("high", True, False),
                                           ("batch_low", False, True),
                                           ("batch_high", True, True))}
        return {
            "model": self.model, "rows": self.rows, "prompt_chars": self.prompt_chars,
            "sampled_rows": self.sampled_rows, "method": self.method,
            "tokens_per_char": round(self.tokens_per_char, 4),
            "input_tokens": self.input_tokens, "output_tokens_low": self.output_tokens_low,
            "output_tokens_high": self.output_tokens_high,
            "thinking_tokens_high": self.thinking_tokens_high,
            "currency": currency, "price_known": self.price is not None,
            "cost_low": _money(costs["low"]), "cost_high": _money(costs["high"]),
            "batch_mode_cost_low": _money(costs["batch_low"]),
            "batch_mode_cost_high": _money(costs["batch_high"]),
            "seconds": self.seconds, "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """The estimate in words, for the CLI and the page."""
        currency = self.price.currency if self.price else "USD"
        how = (f"countTokens on {self.sampled_rows} of {self.rows:,} rows"
               if self.method == "count_tokens" else "about 4 characters per token")
        low_basis = ("answers as long as the earlier run's" if self.output_tokens_low is not None
                     else "input only")
        lines = [
            f"Estimate for {self.rows:,} rows on {self.model} (an estimate, from {how}):",
            f"  input: about {self.input_tokens:,} tokens ({self.prompt_chars:,} characters)",
            f"  output: up to {self.output_tokens_high:,} tokens"
            + (f" (about {self.output_tokens_low:,} at the earlier run's average)"
               if self.output_tokens_low is not None else "")
            + (f", plus up to {self.thinking_tokens_high:,} thinking tokens"
               if self.thinking_tokens_high else ""),
            f"  cost: {format_money(self.cost(high=False), currency)} ({low_basis}) to "
            f"{format_money(self.cost(high=True), currency)} (every answer at its maximum)",
            f"  in batch mode: {format_money(self.cost(high=False, batch_mode=True), currency)}"
            f" to {format_money(self.cost(high=True, batch_mode=True), currency)}",
        ]
        if self.seconds is not None:
            lines.append(f"  time: about {_duration(self.seconds)} at the batch's concurrency "
                         "and rate limits")
        lines += [f"  note: {note}" for note in self.notes]
        return lines


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:.6f}"


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def count_tokens(model: str, text: str) -> int:
    """countTokens through the provider, cached per model and text."""
    key = "costs:count:" + hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return cached
    from batches.providers import catalog  # the SDKs cost a second to import: only here

    tokens = catalog.provider_for(model).count_tokens(model, text)
    cache.set(key, tokens, COUNT_CACHE_S)
    return tokens


def sample(prompts: Iterable[str], k: int = MAX_COUNT_CALLS) -> tuple[int, int, list[str]]:
    """(rows, characters, up to k prompts spread over the whole file): one pass, reservoir
    sampling with a fixed seed, so the same file always gives the same sample."""
    rng = random.Random(0)
    rows = chars = 0
    kept: list[str] = []
    for prompt in prompts:
        rows += 1
        chars += len(prompt)
        if len(kept) < k:
            kept.append(prompt)
        else:
            j = rng.randrange(rows)
            if j < k:
                kept[j] = prompt
    return rows, chars, kept


MAX_THINKING_BUDGET = 32768
THINKING_CHOICES = ("off", "low", "default")


def parse_thinking(value: object) -> str:
    """"off", "low", "default" (the model decides) or a token budget 0..32768; ValueError
    naming the choices otherwise."""
    text = str(value if value is not None else "off").strip().lower() or "off"
    if text in THINKING_CHOICES:
        return text
    if text.isdigit() and int(text) <= MAX_THINKING_BUDGET:
        return str(int(text))
    raise ValueError("Thinking must be off, low, default or a number of tokens from 0 to "
                     f"{MAX_THINKING_BUDGET}.")


def earlier_output_per_row(owner, model: str, prompt: str) -> float | None:
    """Average answer length of the owner's latest answered batch with this prompt and model
    (a sample run of a few rows counts), or None."""
    from batches.models import Batch

    earlier = (Batch.objects.filter(owner=owner, model_name=model, prompt_template=prompt)
               .filter(output_tokens__gt=0).order_by("-created_at").first())
    if earlier is None:
        return None
    answered = earlier.costed_rows + earlier.unpriced_rows
    return earlier.output_tokens / answered if answered else None


def thinking_high(model: str, thinking: str) -> int:
    """The most thinking tokens one answer may spend under the option."""
    if thinking == "off":
        return 128 if "2.5-pro" in model else 0
    if thinking == "low":
        return THINKING_GUESS_TOKENS["low"]
    if thinking.isdigit():
        return int(thinking)
    return MAX_THINKING_TOKENS["pro" if "pro" in model else "flash"]


def estimate(*, model: str, prompts: Iterable[str], system_instruction: str = "",
             max_output_tokens: int | None = None, thinking: str = "off", concurrency: int = 16,
             rpm_limit: int | None = None, tpm_limit: int | None = None,
             output_tokens_per_row: float | None = None) -> Estimate:
    """Estimate a batch of these rendered prompts; never raises for the model's API."""
    rows, chars, kept = sample(prompts)
    system = f"{system_instruction}\n\n" if system_instruction else ""
    total_chars = chars + rows * len(system)
    notes = []
    try:
        counted = [count_tokens(model, system + p) for p in kept]
        sampled_chars = sum(len(system + p) for p in kept)
        ratio = sum(counted) / sampled_chars if sampled_chars else 1 / CHARS_PER_TOKEN
        method = "count_tokens"
    except Exception as err:  # noqa: BLE001 - an estimate never blocks creating the batch
        reason = err.message if isinstance(err, ProviderError) else f"{type(err).__name__}"
        log.info("countTokens unavailable for the estimate: %s", reason)
        notes.append(f"countTokens was not available ({reason}); the input is estimated "
                     f"at {CHARS_PER_TOKEN} characters per token.")
        ratio, method, kept = 1 / CHARS_PER_TOKEN, "chars_per_token", []
    input_tokens = round(total_chars * ratio)
    per_answer = max_output_tokens or MODEL_MAX_OUTPUT_TOKENS
    if max_output_tokens is None:
        notes.append(f"No max output tokens is set, so the highest figure assumes answers of "
                     f"{MODEL_MAX_OUTPUT_TOKENS:,} tokens; set one to narrow the range.")
    price = price_for(model)
    if price is None:
        notes.append(f"The price of {model} is unknown (add it in the admin's Model prices).")
    result = Estimate(
        model=model, rows=rows, prompt_chars=total_chars, sampled_rows=len(kept),
        method=method, tokens_per_char=ratio, input_tokens=input_tokens,
        output_tokens_high=rows * per_answer,
        thinking_tokens_high=rows * thinking_high(model, thinking),
        output_tokens_low=(round(rows * output_tokens_per_row)
                           if output_tokens_per_row is not None else None),
        price=price, notes=notes,
    )
    result.seconds = _seconds(rows, input_tokens / rows if rows else 0, concurrency, rpm_limit,
                              tpm_limit)
    return result


def _seconds(rows: int, tokens_per_row: float, concurrency: int, rpm: int | None,
             tpm: int | None) -> int | None:
    if not rows:
        return 0
    rates = [concurrency / ASSUMED_LATENCY_S]
    if rpm:
        rates.append(rpm / 60)
    if tpm and tokens_per_row:
        rates.append(tpm / 60 / tokens_per_row)
    return round(rows / min(rates))
