"""Scenario 10 in a process of its own, so that its peak memory is measured alone:
`python -m batches.bench.batchmode_child OWNER_ID ROWS`, with GEMINI_BASE_URL the bench's fake.

Makes a batch-mode batch of ROWS rows (bulk inserts, no ingest), submits it as one Batch Mode
job (a JSONL file through the Files API), waits for the fake to finish it, then collects the
results file (streamed to disk, written in chunks). Prints one JSON line: seconds to collect,
rows succeeded, batch id, RSS before collecting and peak RSS (MB)."""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(owner_id: int, n: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from batches.batchmode import client, collect, submit
    from batches.models import Batch, BatchResult, Mode

    settings.BATCH_MODE_MAX_ROWS = n  # one job holds every row
    owner = get_user_model().objects.get(pk=owner_id)
    batch = Batch.objects.create(owner=owner, name="bench batch mode", mode=Mode.BATCH,
                                 prompt_template="Classify: {{text}}", columns=["text"],
                                 total_rows=n)
    for start in range(0, n, 5000):
        BatchResult.objects.bulk_create(
            BatchResult(batch=batch, index=i, input={"text": f"review {i}"},
                        prompt=f"Classify: review {i} was fine, arrived on time, would buy again")
            for i in range(start, min(n, start + 5000)))
    submitted = submit.submit(batch.pk)
    job = batch.provider_jobs.get()
    while client.get(job.name).state in client.OPEN_STATES:
        time.sleep(0.2)
    before = _rss_mb()
    started = time.perf_counter()
    collect.poll_all(enqueue=lambda batch_id: None)
    seconds = time.perf_counter() - started
    succeeded = batch.results.filter(status="succeeded").count()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {"seconds": seconds, "rows": succeeded, "submitted": submitted.rows,
            "batch_id": batch.pk, "rss_before_mb": before, "peak_rss_mb": peak_mb}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))), flush=True)
