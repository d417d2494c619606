"""Drafts, sample runs and the result cache, driven in-process against a FakeGemini."""

from __future__ import annotations

import pytest

from batches import engine, iterations, services
from batches.models import Batch, BatchResult, CachedAnswer
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

pytestmark = pytest.mark.django_db(transaction=True)


def rows(n: int, prefix: str = "row") -> list[dict]:
    return [{"text": f"{prefix} {i}"} for i in range(n)]


def run_sample(batch: Batch) -> Batch:
    engine.run_slice(batch.pk, budget_s=5)
    batch.refresh_from_db()
    return batch


def test_a_draft_stores_its_rows_and_runs_nothing(fake, make_batch, enqueued):
    batch = make_batch(rows(4), start=False)

    engine.run_slice(batch.pk, budget_s=2)

    batch.refresh_from_db()
    assert batch.status == Batch.Status.DRAFT and batch.total_rows == 4
    assert enqueued == [] and fake.stats.total == 0
    assert set(batch.results.values_list("status", flat=True)) == {"pending"}


def test_drafts_do_not_count_against_the_active_batch_cap(make_batch, settings, enqueued):
    settings.BATCH_MAX_ACTIVE_PER_USER = 1
    make_batch(rows(1))
    draft = make_batch(rows(1), start=False)  # a second active batch would be refused
    with pytest.raises(services.LimitReached):
        iterations.batch_start(batch=draft)
    assert Batch.objects.get(pk=draft.pk).status == Batch.Status.DRAFT


def test_a_sample_runs_only_its_rows_and_the_draft_stays_a_draft(fake, make_batch, enqueued):
    batch = make_batch(rows(10), start=False)

    run = iterations.batch_sample(batch=batch, size=3)
    run_sample(batch)

    assert run.indexes == [0, 1, 2] and enqueued == [batch.pk]
    statuses = dict(batch.results.values_list("index", "status"))
    assert [i for i, s in statuses.items() if s == "succeeded"] == [0, 1, 2]
    assert batch.status == Batch.Status.DRAFT and fake.stats.total == 3
    assert batch.results.get(index=0).output == "ECHO: Say: row 0"


def test_a_sample_covering_every_row_still_leaves_a_draft(fake, make_batch, enqueued):
    batch = make_batch(rows(3), start=False)
    run = iterations.batch_sample(batch=batch, size=50)  # more than the rows: all of them
    run_sample(batch)
    assert run.indexes == [0, 1, 2]
    assert batch.status == Batch.Status.DRAFT and batch.finished_at is None


def test_a_seeded_random_sample_picks_the_same_rows_again(make_batch, enqueued):
    batch = make_batch(rows(100), start=False)
    first = iterations.batch_sample(batch=batch, size=5, seed=42)
    again = iterations.batch_sample(batch=batch, size=5, seed=42)
    other = iterations.batch_sample(batch=batch, size=5, seed=43)
    assert first.indexes == again.indexes != other.indexes and first.seed == 42
    unseeded = iterations.batch_sample(batch=batch, size=5, random_sample=True)
    assert unseeded.seed is not None and len(unseeded.indexes) == 5


def test_chosen_indexes_are_checked(make_batch, enqueued):
    batch = make_batch(rows(3), start=False)
    assert iterations.batch_sample(batch=batch, indexes=[2, 0, 2]).indexes == [0, 2]
    for bad in ([3], [-1], ["1"], [True], []):
        with pytest.raises(services.InvalidInput) as err:
            iterations.batch_sample(batch=batch, indexes=bad)
        assert err.value.field == "indexes"
    with pytest.raises(services.InvalidInput):
        iterations.batch_sample(batch=batch, size=0)


def test_editing_a_draft_rebuilds_prompts_and_drops_stale_sample_answers(fake, make_batch,
                                                                         enqueued):
    batch = make_batch(rows(4), start=False)
    iterations.batch_sample(batch=batch, size=2)
    run_sample(batch)

    iterations.batch_edit_draft(batch=batch, prompt="Shout: {{text}}", temperature=0.5)

    prompts = list(batch.results.order_by("index").values_list("prompt", flat=True))
    assert prompts == [f"Shout: row {i}" for i in range(4)]
    assert set(batch.results.values_list("status", flat=True)) == {"pending"}
    assert batch.temperature == 0.5 and batch.status == Batch.Status.DRAFT


def test_renaming_a_draft_keeps_its_sample_answers(fake, make_batch, enqueued):
    batch = make_batch(rows(4), start=False)
    iterations.batch_sample(batch=batch, size=2)
    run_sample(batch)
    iterations.batch_edit_draft(batch=batch, name="Better name", concurrency=4)
    assert batch.results.filter(status="succeeded").count() == 2


def test_a_prompt_naming_a_missing_column_is_refused_and_changes_nothing(make_batch, enqueued):
    batch = make_batch(rows(2), start=False)
    with pytest.raises(services.InvalidInput) as err:
        iterations.batch_edit_draft(batch=batch, prompt="Say: {{txt}}", temperature=1.0)
    assert str(err.value) == "{{txt}} is not a column of the file. The columns are: text."
    batch.refresh_from_db()
    assert batch.prompt_template == "Say: {{text}}" and batch.temperature is None


def test_only_drafts_can_be_edited_sampled_or_started(make_batch, enqueued):
    batch = make_batch(rows(2))
    for action in (lambda: iterations.batch_start(batch=batch),
                   lambda: iterations.batch_sample(batch=batch),
                   lambda: iterations.batch_edit_draft(batch=batch, prompt="x {{text}}")):
        with pytest.raises(services.ActionNotAllowed):
            action()


def test_starting_after_a_sample_takes_the_sample_rows_from_the_cache(fake, make_batch,
                                                                      enqueued):
    batch = make_batch(rows(10), start=False)
    iterations.batch_sample(batch=batch, size=5)
    run_sample(batch)
    assert fake.stats.total == 5

    iterations.batch_start(batch=batch)
    run_until_done(batch)

    assert batch.status == Batch.Status.COMPLETED and fake.stats.total == 10
    cached = set(batch.results.filter(cached=True).values_list("index", flat=True))
    assert cached == {0, 1, 2, 3, 4}
    assert batch.results.filter(cached=True, attempts=0).count() == 5
    figures = iterations.cache_figures(batch)
    assert figures.rows == 5 and figures.tokens_saved > 0
    # The batch's spend is the five rows it paid for, not ten.
    paid = batch.results.filter(cached=False)
    assert batch.prompt_tokens == sum(r.prompt_tokens for r in paid)


def test_a_changed_prompt_is_not_answered_from_the_cache(fake, make_batch, enqueued):
    batch = make_batch(rows(3), start=False)
    iterations.batch_sample(batch=batch, size=3)
    run_sample(batch)
    iterations.batch_edit_draft(batch=batch, prompt="Other: {{text}}")
    iterations.batch_sample(batch=batch, size=3)
    run_sample(batch)
    assert fake.stats.total == 6
    assert batch.results.get(index=0).output == "ECHO: Other: row 0"


def test_a_batch_that_opts_out_always_calls_the_model(fake, make_batch, enqueued):
    first = make_batch(rows(3))
    run_until_done(first)
    second = make_batch(rows(3), use_cache=False)
    run_until_done(second)
    assert fake.stats.total == 6 and not second.results.filter(cached=True).exists()


def test_another_users_identical_batch_never_reuses_answers(fake, make_batch, other_user,
                                                            enqueued):
    mine = make_batch(rows(3))
    run_until_done(mine)
    theirs = make_batch(rows(3), owner=other_user)
    run_until_done(theirs)
    assert fake.stats.total == 6 and not theirs.results.filter(cached=True).exists()


def test_deleting_a_batch_keeps_answers_other_batches_reused(fake, make_batch, enqueued):
    first = make_batch(rows(3))
    run_until_done(first)
    second = make_batch(rows(3))
    run_until_done(second)
    services.batch_delete(batch=first)

    second.refresh_from_db()
    assert list(second.results.order_by("index").values_list("output", flat=True)) == [
        f"ECHO: Say: row {i}" for i in range(3)]
    third = make_batch(rows(3))
    run_until_done(third)
    assert fake.stats.total == 3 and third.results.filter(cached=True).count() == 3
    assert CachedAnswer.objects.count() == 3


def test_cached_rows_take_no_rate_limit_token(fake, make_batch, enqueued):
    first = make_batch(rows(5))
    run_until_done(first)
    # One request a minute: a model call would wait a minute; cached rows do not.
    again = make_batch(rows(5), rpm_limit=1)
    run_until_done(again, timeout=10)
    assert again.status == Batch.Status.COMPLETED and fake.stats.total == 5


def test_a_sample_of_a_conversation_turn_runs_its_earlier_turns_too(fake, make_batch, enqueued):
    data = [{"chat": "a", "text": f"turn {i}"} for i in range(3)]
    batch = make_batch(data, start=False, conversation_column="chat")
    iterations.batch_sample(batch=batch, indexes=[2])
    run_sample(batch)
    assert set(batch.results.filter(status="succeeded").values_list("index", flat=True)) == {
        0, 1, 2}


def test_a_lost_sample_run_is_rescued(make_batch, enqueued):
    from batches.engine.recovery import rescue

    batch = make_batch(rows(3), start=False)
    iterations.batch_sample(batch=batch, size=1)
    enqueued.clear()
    report = rescue(enqueue=enqueued.append)
    assert report.enqueued == [batch.pk]
    BatchResult.objects.filter(batch=batch, sample=True).update(status="succeeded")
    rescue(enqueue=enqueued.append)
    batch.refresh_from_db()
    assert batch.sampling is False and batch.status == Batch.Status.DRAFT
