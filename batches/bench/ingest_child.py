"""Run one batch_create from a CSV file in a process of its own, so that its peak memory is
measured alone: `python -m batches.bench.ingest_child FILE OWNER_ID PROMPT`.

Prints one JSON line: seconds, rows, batch id, peak RSS (MB). The batch is paused in the same
transaction that creates it, so no worker runs it."""

from __future__ import annotations

import json
import resource
import sys
import time


def main(path: str, owner_id: int, prompt: str) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from batches import services

    owner = get_user_model().objects.get(pk=owner_id)
    started = time.perf_counter()
    with open(path, "rb") as file, transaction.atomic():
        batch = services.batch_create(owner=owner, prompt=prompt, file=file,
                                      filename="bench-ingest.csv", name="bench ingest")
        services.batch_pause(batch=batch)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {"seconds": seconds, "rows": batch.total_rows, "batch_id": batch.pk,
            "peak_rss_mb": peak_mb}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])), flush=True)
