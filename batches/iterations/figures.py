"""What the result cache saved a batch."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Sum

from batches.models import Batch


@dataclass(frozen=True)
class CacheFigures:
    rows: int  # rows answered from the cache
    total: int
    prompt_tokens_saved: int
    output_tokens_saved: int

    @property
    def tokens_saved(self) -> int:
        return self.prompt_tokens_saved + self.output_tokens_saved


def cache_figures(batch: Batch) -> CacheFigures:
    found = batch.results.filter(cached=True).aggregate(
        n=Count("id"), p=Sum("prompt_tokens"), o=Sum("output_tokens"))
    return CacheFigures(rows=found["n"] or 0, total=batch.total_rows,
                        prompt_tokens_saved=found["p"] or 0, output_tokens_saved=found["o"] or 0)
