"""Iterating on a prompt cheaply: drafts, sample runs, new versions, comparisons, re-runs.

    iterations.batch_edit_draft(batch=b, prompt=...)      # a draft's prompt and settings
    iterations.batch_sample(batch=b, size=5, seed=1)      # run a few rows of a draft now
    iterations.batch_start(batch=b)                       # the draft runs in full
    iterations.batch_new_version(batch=b, owner=u, file=None)  # a new draft linked by `parent`
    iterations.compare_batches(a, b) / compare_csv(a, b)  # the two versions' answers side by side
    iterations.batch_rerun_rows(batch=b, indexes=[...])   # chosen rows again, bypassing the cache
    iterations.cache_figures(b)                           # rows from the cache, tokens saved

A draft is created by services.batch_create(start=False). Rows whose request is unchanged come
from the result cache (batches.resultcache) when the engine claims them.

Layer: beside services, which it builds on; it may import models, prompts, resultcache, engine
tasks, services and exports; it must never import web, api, admin or cli.
"""

from batches.iterations.compare import Comparison, compare_batches, compare_csv
from batches.iterations.drafts import UNCHANGED, batch_edit_draft, batch_start
from batches.iterations.figures import CacheFigures, cache_figures
from batches.iterations.rerun import batch_rerun_rows, results_rerun
from batches.iterations.samples import DEFAULT_SAMPLE_SIZE, SampleRun, batch_sample
from batches.iterations.versions import batch_new_version

__all__ = [
    "DEFAULT_SAMPLE_SIZE", "UNCHANGED", "CacheFigures", "Comparison", "SampleRun",
    "batch_edit_draft", "batch_new_version", "batch_rerun_rows", "batch_sample", "batch_start",
    "cache_figures", "compare_batches", "compare_csv", "results_rerun",
]
