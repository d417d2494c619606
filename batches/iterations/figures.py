"""What the result cache saved a batch."""

from __future__ import annotations

from dataclasses import dataclass

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
    """From the batch's counters (the engine keeps them live; no row is read)."""
    return CacheFigures(rows=batch.cached_count, total=batch.total_rows,
                        prompt_tokens_saved=batch.saved_prompt_tokens,
                        output_tokens_saved=batch.saved_output_tokens)
