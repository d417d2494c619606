"""API clients that send a user's token, and batches made straight with the ORM, so API and
export tests can set any row state."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches.models import Batch, BatchResult


def client_for(user) -> APIClient:
    """An API client authenticated as `user` by its token, as a script would be."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def orm_batch(owner, rows: list[dict], *, statuses: list[str] | None = None,
              outputs: list[str] | None = None, **fields) -> Batch:
    """A batch with one BatchResult per row; statuses/outputs set per row when given."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    fields.setdefault("prompt_template", "Say: {{" + columns[0] + "}}" if columns else "Hi")
    batch = Batch.objects.create(owner=owner, columns=columns, total_rows=len(rows), **fields)
    statuses = statuses or ["pending"] * len(rows)
    outputs = outputs or [""] * len(rows)
    now = timezone.now()
    BatchResult.objects.bulk_create(
        BatchResult(
            batch=batch, index=i, input=row, prompt=f"prompt {i}", status=statuses[i],
            output=outputs[i],
            error="boom" if statuses[i] == "failed" else "",
            attempts=1 if statuses[i] in ("succeeded", "failed") else 0,
            prompt_tokens=3 if statuses[i] == "succeeded" else None,
            output_tokens=5 if statuses[i] == "succeeded" else None,
            latency_ms=12 if statuses[i] == "succeeded" else None,
            finished_at=now if statuses[i] in ("succeeded", "failed", "cancelled") else None,
        )
        for i, row in enumerate(rows)
    )
    return batch
