"""The claim's and the write's statements written as SQL (batches.engine.sql), on both
databases: each must mean what the ORM query it replaced meant."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from batches.engine import sql
from batches.models import Batch, BatchResult, Priority
from tests.helpers import engine as engine_helpers

enqueued = engine_helpers.enqueued

pytestmark = pytest.mark.django_db

PENDING, RUNNING = BatchResult.Status.PENDING, BatchResult.Status.RUNNING


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def test_runnable_batches_come_by_priority_then_age_with_their_claimable_and_running_rows(
        make_batch, enqueued, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    old, new, urgent = (make_batch(rows(3)) for _ in range(3))
    full = make_batch(rows(3), concurrency=1)
    BatchResult.objects.filter(batch=full, index=0).update(status=RUNNING)
    Batch.objects.filter(pk=urgent.pk).update(priority=Priority.HIGH)
    BatchResult.objects.filter(batch=old, index=0).update(status=RUNNING)
    later = timezone.now() + timedelta(hours=1)
    BatchResult.objects.filter(batch=new).update(not_before=later)  # none claimable yet
    paused, cancelling = make_batch(rows(1)), make_batch(rows(1))
    Batch.objects.filter(pk=paused.pk).update(paused=True)
    Batch.objects.filter(pk=cancelling.pk).update(cancel_requested=True)
    draft, sampling = make_batch(rows(1)), make_batch(rows(1))
    Batch.objects.filter(pk__in=[draft.pk, sampling.pk]).update(status=Batch.Status.DRAFT)
    Batch.objects.filter(pk=sampling.pk).update(sampling=True)

    found = sql.runnable_with_counts(timezone.now())

    assert [row[0] for row in found] == [urgent.pk, old.pk, new.pk, full.pk, sampling.pk]
    by_id = {row[0]: row for row in found}
    assert by_id[old.pk][8:] == (True, 1)
    assert by_id[new.pk][8:] == (False, 0)
    assert by_id[urgent.pk][8:] == (True, 0)
    assert by_id[full.pk][8:] == (False, 1)  # at its cap: its pending rows are not looked for
    # Once their time has come, the new batch's rows are claimable.
    assert {row[0]: row[8] for row in sql.runnable_with_counts(later)}[new.pk] is True


def test_only_simple_runnable_batches_are_locked_with_their_concurrency(make_batch, enqueued,
                                                                         settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    simple = make_batch(rows(2), concurrency=7)
    budgeted = make_batch(rows(2), budget="1.00")
    chat = make_batch([{"text": "a", "chat": "1"}], conversation_column="chat")
    paused = make_batch(rows(2))
    Batch.objects.filter(pk=paused.pk).update(paused=True)

    assert sql.lock_simple([simple.pk, budgeted.pk, chat.pk, paused.pk]) == {simple.pk: 7}
    assert sql.lock_simple([]) == {}


def test_take_marks_only_pending_rows_running_and_returns_them_decoded(make_batch, enqueued):
    batch = make_batch(rows(3))
    first, second, third = batch.results.order_by("index")
    BatchResult.objects.filter(pk=first.pk).update(document_ids=[4, 5], bypass_cache=True)
    BatchResult.objects.filter(pk=third.pk).update(status=RUNNING)  # another claim has it
    token, now = uuid.uuid4(), timezone.now()

    taken = sql.take([first.pk, second.pk, third.pk], token, now, now + timedelta(seconds=30))

    assert sorted(taken) == [
        (batch.pk, first.pk, 0, "Say: row 0", "", 0, [4, 5], True),
        (batch.pk, second.pk, 1, "Say: row 1", "", 0, [], False),
    ]
    first.refresh_from_db()
    assert first.status == RUNNING and first.claim_token == token
    assert first.started_at == now and first.lease_expires_at == now + timedelta(seconds=30)
    third.refresh_from_db()
    assert third.claim_token is None


def test_mark_running_starts_a_pending_batch_and_keeps_an_earlier_start(make_batch, enqueued,
                                                                       settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    fresh, resumed, running = (make_batch(rows(1)) for _ in range(3))
    earlier = timezone.now() - timedelta(hours=2)
    Batch.objects.filter(pk=resumed.pk).update(started_at=earlier)
    Batch.objects.filter(pk=running.pk).update(status=Batch.Status.RUNNING, started_at=earlier)
    now = timezone.now()

    sql.mark_running({fresh.pk, resumed.pk, running.pk}, now)

    got = {b.pk: b for b in Batch.objects.filter(pk__in=[fresh.pk, resumed.pk, running.pk])}
    assert all(b.status == Batch.Status.RUNNING and b.slice_heartbeat_at == now
               for b in got.values())
    assert got[fresh.pk].started_at == now
    assert got[resumed.pk].started_at == earlier and got[running.pk].started_at == earlier


def test_the_write_lock_reports_cancels_and_the_done_batches_are_found(make_batch, enqueued,
                                                                      settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    done, open_, finished, cancelling = (make_batch(rows(2)) for _ in range(4))
    BatchResult.objects.filter(batch__in=[done, finished]).update(
        status=BatchResult.Status.SUCCEEDED)
    BatchResult.objects.filter(batch=open_, index=1).update(status=RUNNING)
    BatchResult.objects.filter(batch=open_, index=0).update(status=BatchResult.Status.FAILED)
    Batch.objects.filter(pk=finished.pk).update(status=Batch.Status.COMPLETED)
    Batch.objects.filter(pk=cancelling.pk).update(cancel_requested=True)
    ids = [done.pk, open_.pk, finished.pk, cancelling.pk]

    assert sql.lock_for_write(ids) == {done.pk: False, open_.pk: False, finished.pk: False,
                                       cancelling.pk: True}
    assert sql.without_open_rows(ids, Batch.FINAL_STATUSES) == [done.pk]


def test_a_writes_totals_are_added_to_every_batch_in_one_statement(make_batch, enqueued, settings,
                                                                   django_assert_num_queries):
    from decimal import Decimal

    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    answered, waiting, untouched = (make_batch(rows(1)) for _ in range(3))
    now = timezone.now()
    Batch.objects.filter(pk__in=[answered.pk, waiting.pk]).update(
        api_waiting_since=now - timedelta(minutes=1), prompt_tokens=10,
        cost_spent=Decimal("0.5"))
    fields = ["prompt_tokens", "output_tokens", "cost_spent"]

    def prepared(batch_id, newest, *amounts):
        return (batch_id, sql.prep(Batch, "api_waiting_since", newest),
                *(Batch._meta.get_field(name).get_db_prep_save(amount, sql.connection)
                  for name, amount in zip(fields, amounts, strict=True)))

    with django_assert_num_queries(1):
        sql.add_to_batches(fields, [
            prepared(answered.pk, now, 5, 7, Decimal("0.25")),
            # No answer in this write (a failure only): the wait for the API stands.
            prepared(waiting.pk, None, 1, 0, Decimal("0.000001")),
        ])

    got = {b.pk: b for b in Batch.objects.filter(pk__in=[answered.pk, waiting.pk, untouched.pk])}
    assert (got[answered.pk].prompt_tokens, got[answered.pk].output_tokens,
            got[answered.pk].cost_spent) == (15, 7, Decimal("0.75"))
    assert got[answered.pk].api_waiting_since is None  # an answer came after the wait began
    assert (got[waiting.pk].prompt_tokens, got[waiting.pk].cost_spent) == (11, Decimal("0.500001"))
    assert got[waiting.pk].api_waiting_since is not None
    assert (got[untouched.pk].prompt_tokens, got[untouched.pk].cost_spent) == (0, Decimal(0))
    # An answer from before the wait began does not end it.
    sql.add_to_batches(fields, [prepared(waiting.pk, now - timedelta(hours=1), 0, 0, 0)])
    assert Batch.objects.get(pk=waiting.pk).api_waiting_since is not None
