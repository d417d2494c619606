"""Sample runs: a draft's chosen rows run now, the rest wait for its start."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

from batches import services
from batches.engine import tasks
from batches.iterations.drafts import _require_draft
from batches.models import Batch, BatchResult

DEFAULT_SAMPLE_SIZE = 5
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class SampleRun:
    indexes: list[int]
    seed: int | None  # set for a random sample: the same seed picks the same rows again


def pick_indexes(total: int, *, size: int | None = None, seed: int | None = None,
                 random_sample: bool = False, indexes: Sequence[int] | None = None,
                 ) -> tuple[list[int], int | None]:
    """The rows of a sample: chosen indexes, a seeded random sample, or the first `size`."""
    if indexes is not None:
        chosen = sorted(set(_check_indexes(indexes, total)))
        if not chosen:
            raise services.InvalidInput("Choose at least one row.", field="indexes")
        return chosen, None
    size = DEFAULT_SAMPLE_SIZE if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise services.InvalidInput("The sample size must be a whole number of at least 1.",
                                    field="size")
    size = min(size, total)  # a sample larger than the batch is the whole batch
    if random_sample or seed is not None:
        if seed is None:
            seed = random.randint(0, MAX_SEED)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise services.InvalidInput("The seed must be a whole number.", field="seed")
        return sorted(random.Random(seed).sample(range(total), size)), seed
    return list(range(size)), None


def _check_indexes(indexes: Sequence[int], total: int) -> list[int]:
    if isinstance(indexes, str | bytes) or not hasattr(indexes, "__iter__"):
        raise services.InvalidInput("Indexes must be a list of row numbers.", field="indexes")
    out = []
    for value in indexes:
        if isinstance(value, bool) or not isinstance(value, int):
            raise services.InvalidInput(f"{value!r} is not a row number.", field="indexes")
        if not 0 <= value < total:
            raise services.InvalidInput(
                f"The batch has no row {value} (rows are numbered 0 to {total - 1}).",
                field="indexes")
        out.append(value)
    return out


def batch_sample(*, batch: Batch, size: int | None = None, seed: int | None = None,
                 random_sample: bool = False, indexes: Sequence[int] | None = None,
                 row_numbers: Sequence[int] | None = None) -> SampleRun:
    """Run some rows of a draft now; their answers show next to their inputs. Rows answered by
    an identical earlier request come from the cache. Rows are chosen by `indexes` (0-based, as
    the API counts) or by `row_numbers` (as the pages show them: the file's line)."""
    _require_draft(batch, "tried on a sample")
    if row_numbers is not None:
        indexes = row_indexes(batch, row_numbers)
    chosen, seed = pick_indexes(batch.total_rows, size=size, seed=seed,
                                random_sample=random_sample, indexes=indexes)
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        _require_draft(locked, "tried on a sample")
        rows = batch.results.filter(index__in=chosen)
        if batch.conversation_column:
            rows = _with_earlier_turns(batch, rows)
        batch.results.filter(sample=True).exclude(pk__in=rows.values("pk")).update(sample=False)
        rows.exclude(status=BatchResult.Status.PENDING).reset()
        rows.update(sample=True)
        Batch.objects.filter(pk=batch.pk).update(sampling=True)
        transaction.on_commit(lambda: tasks.enqueue_batch(batch.pk))
    batch.refresh_from_db()
    return SampleRun(indexes=chosen, seed=seed)


def row_indexes(batch: Batch, numbers: Sequence[int]) -> list[int]:
    """The indexes of the rows the user knows by these numbers (BatchResult.row_number: the
    file's line, or the 1-based position of rows that have none)."""
    wanted = set(numbers)
    matches = batch.results.filter(
        Q(source_line__in=wanted) | Q(source_line__isnull=True, index__in=[n - 1 for n in wanted])
    ).values_list("source_line", "index")
    by_number = {line if line is not None else index + 1: index for line, index in matches}
    missing = sorted(wanted - set(by_number))
    if missing:
        first, last = (batch.results.order_by(order).first() for order in ("index", "-index"))
        span = f" (rows are numbered {first.row_number} to {last.row_number})" if first else ""
        raise services.InvalidInput(f"The batch has no row {missing[0]}{span}.", field="indexes")
    return sorted(by_number[n] for n in wanted)


def _with_earlier_turns(batch: Batch, rows):
    """A conversation's turn needs its earlier turns answered first: they join the sample."""
    reach: dict[str, int] = {}
    for key, index in rows.exclude(conversation_key="").values_list("conversation_key", "index"):
        reach[key] = max(index, reach.get(key, -1))
    ids = set(rows.values_list("pk", flat=True))
    for key, last in reach.items():
        ids.update(batch.results.filter(conversation_key=key, index__lte=last)
                   .values_list("pk", flat=True))
    return batch.results.filter(pk__in=ids)
