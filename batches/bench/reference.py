"""The reference for the overhead scenario: the same google-genai client, in a plain asyncio
loop, at the same concurrency, against the same server; no database, no queue."""

from __future__ import annotations

import asyncio
import time

from batches.providers import Request
from batches.providers.gemini import GeminiProvider


async def _run(url: str, api_key: str, model: str, prompts: list[str], concurrency: int) -> float:
    provider = GeminiProvider(api_key=api_key, base_url=url)
    pending = iter(prompts)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for prompt in pending:
            try:
                await provider.generate(Request(model=model, prompt=prompt))
            except Exception:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await provider.aclose()
    if errors:
        raise RuntimeError(f"The reference loop saw {errors} errors from the fake server.")
    return elapsed


def reference_seconds(url: str, api_key: str, model: str, prompts: list[str],
                      concurrency: int) -> float:
    """Seconds the raw SDK loop takes to send every prompt, `concurrency` at a time."""
    return asyncio.run(_run(url, api_key, model, prompts, concurrency))
