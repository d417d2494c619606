"""The reference for the overhead scenario: the same google-genai client in plain asyncio loops,
run the way the pipeline runs (N processes, each at concurrency / N, started together), against
the same server; no database, no queue.

Run as `python -m batches.bench.reference PROMPTS_FILE URL MODEL CONCURRENCY START_AT`: one
process of the reference. It prints one JSON line: its start, its end and its CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from batches.providers import Request
from batches.providers.gemini import GeminiProvider

START_DELAY_S = 3.0  # time for every process to import google-genai before the common start


@dataclass
class Reference:
    seconds: float  # wall time from the common start to the last process's end
    cpu_s_per_row: float  # user + system CPU of all processes, per request
    processes: int


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
    """Seconds one raw SDK loop takes to send every prompt, `concurrency` at a time."""
    return asyncio.run(_run(url, api_key, model, prompts, concurrency))


def reference_processes(url: str, api_key: str, model: str, prompts: list[str],
                        concurrency: int, processes: int, env: dict[str, str]) -> Reference:
    """`processes` raw SDK loops in as many processes, each with an equal share of the prompts
    at concurrency / processes, all starting at the same moment."""
    start_at = time.time() + START_DELAY_S + 0.5 * processes
    children, files = [], []
    try:
        for i in range(processes):
            share = prompts[i::processes]
            f = tempfile.NamedTemporaryFile("w", prefix="bench-ref-", suffix=".json",
                                            delete=False)
            json.dump(share, f)
            f.close()
            files.append(f.name)
            argv = [sys.executable, "-m", "batches.bench.reference", f.name, url, model,
                    str(max(1, concurrency // processes)), repr(start_at)]
            children.append(subprocess.Popen(argv, env={**env, "BENCH_API_KEY": api_key},
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True))
        results = []
        for child in children:
            out, err = child.communicate(timeout=600)
            if child.returncode != 0:
                raise RuntimeError(f"A reference process failed:\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        for name in files:
            os.unlink(name)
    # A process still importing at the common start begins late; time from the first begin.
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    return Reference(seconds=seconds, cpu_s_per_row=cpu / max(1, len(prompts)),
                     processes=processes)


def _child(prompts_file: str, url: str, model: str, concurrency: int, start_at: float) -> None:
    with open(prompts_file) as f:
        prompts = json.load(f)
    time.sleep(max(0.0, start_at - time.time()))
    began = time.time()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(_run(url, os.environ["BENCH_API_KEY"], model, prompts, concurrency))
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - cpu_start.ru_utime) + (after.ru_stime - cpu_start.ru_stime)
    print(json.dumps({"start": began, "end": end, "cpu_s": cpu}))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
