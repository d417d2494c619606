"""The estimate against the run: on three tables of different shapes the estimated input tokens
are within 10 % of what the answers then report (the fake's deterministic tokenizer: one token
per word). The table in docs/costs.md is this test's output (`pytest -s`)."""

from __future__ import annotations

import pytest

from batches import services
from batches.providers import gemini
from tests.helpers import costs as cost_helpers
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued
prices = cost_helpers.prices

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("prices")]


def test_the_estimated_input_tokens_are_within_ten_percent_of_the_run(fake, user, enqueued,
                                                                      tmp_path):
    gemini.reset_provider()
    table = []
    for name, path in cost_helpers.accuracy_csvs(tmp_path).items():
        prompt = cost_helpers.ACCURACY_PROMPTS[name]
        with open(path, "rb") as handle:
            estimate = services.batch_estimate(owner=user, prompt=prompt, file=handle,
                                               filename=name, max_output_tokens=50)
        with open(path, "rb") as handle:
            batch = services.batch_create(owner=user, prompt=prompt, file=handle,
                                          filename=name, max_output_tokens=50, concurrency=64)
        batch = run_until_done(batch, timeout=120)
        error = (estimate.input_tokens - batch.prompt_tokens) / batch.prompt_tokens
        table.append((name, batch.total_rows, estimate.prompt_chars // batch.total_rows,
                      estimate.sampled_rows, estimate.input_tokens, batch.prompt_tokens, error))
        assert estimate.method == "count_tokens"
        assert batch.status == "completed"
        assert abs(error) <= 0.10, (name, estimate.input_tokens, batch.prompt_tokens)
    print("\n| File | Rows | Characters per prompt | Rows counted | Estimated input tokens "
          "| Reported by the run | Error |")
    print("|---|---|---|---|---|---|---|")
    for name, rows, chars, sampled, estimated, reported, error in table:
        print(f"| {name} | {rows:,} | {chars:,} | {sampled} | {estimated:,} | {reported:,} "
              f"| {error:+.1%} |")
