"""Issue 13 at the service layer: what one ordinary account can make the site do.

Every entry point (page, API, CLI) creates and reopens batches through batches.services, so the
limits are tested here once; tests/api and tests/web check that each entry point answers with
them."""

import io
import time

import pytest
from django.db import connection

from batches.models import Batch, Priority
from batches.services import (
    MAX_OUTPUT_TOKENS,
    InvalidInput,
    LimitReached,
    NotPermitted,
    RateLimited,
    batch_cancel,
    batch_create,
    batch_resume,
    batch_retry_failed,
    batch_update,
    max_concurrency_for,
)
from tests.conftest import csv_file, grant_high_priority

# 1. The prompt.

def test_a_one_megabyte_hostile_prompt_is_refused_in_well_under_a_second(user, settings):
    hostile = "{{" + " " * 1_000_000
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as caught:
        batch_create(owner=user, prompt=hostile, rows=[{"a": "1"}])
    assert time.perf_counter() - started < 0.5
    assert caught.value.field == "prompt"
    assert "1,000,002 characters long; the limit is 20,000" in caught.value.message
    assert not Batch.objects.exists()


def test_a_hostile_prompt_under_the_cap_parses_at_once_and_stays_literal(user):
    hostile = "{{text}} {{" + " " * 19_000
    started = time.perf_counter()
    batch = batch_create(owner=user, prompt=hostile, rows=[{"text": "x"}])
    assert time.perf_counter() - started < 2
    assert batch.results.get().prompt == "x {{" + " " * 19_000


def test_the_system_instruction_is_capped(user, settings):
    settings.BATCH_MAX_SYSTEM_INSTRUCTION_CHARS = 100
    with pytest.raises(InvalidInput) as caught:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": "1"}], system_instruction="x" * 101)
    assert caught.value.field == "system_instruction"
    assert "the limit is 100" in caught.value.message


# 2 and 3. Rows.

class AtomicWatchingFile(io.BytesIO):
    """Notes, at every read, whether a transaction is open on the default connection."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.in_transaction: list[bool] = []

    def read(self, *args):
        self.in_transaction.append(connection.in_atomic_block)
        return super().read(*args)


@pytest.mark.django_db(transaction=True)
def test_the_whole_file_is_read_before_the_creating_transaction_opens(user):
    # 400 KB: the rows are read in several chunks after the header.
    upload = AtomicWatchingFile(b"id,text\n" + b"".join(b"%d,%s\n" % (i, b"x" * 90)
                                                         for i in range(4000)))
    batch = batch_create(owner=user, prompt="{{text}}", file=upload, filename="rows.csv")
    assert batch.total_rows == 4000
    assert len(upload.in_transaction) > 2
    assert not any(upload.in_transaction)


@pytest.mark.django_db(transaction=True)
def test_a_bad_row_late_in_the_file_changes_nothing(user):
    upload = io.BytesIO(b"id,text\n" + b"1,a\n" * 3000 + b"2,b,c\n")
    with pytest.raises(InvalidInput) as caught:
        batch_create(owner=user, prompt="{{text}}", file=upload, filename="rows.csv")
    assert caught.value.line == 3002
    assert not Batch.objects.exists()


def test_short_rows_are_stored_without_padding_and_render_missing_cells_empty(user):
    header = ",".join(f"c{i}" for i in range(10_000))
    batch = batch_create(owner=user, prompt="[{{c0}}][{{c9999}}]",
                         file=csv_file(header + "\n" + "x\n" * 200), filename="wide.csv")
    row = batch.results.get(index=0)
    assert row.input == {"c0": "x"}
    assert row.prompt == "[x][]"


def test_the_total_number_of_cells_is_capped(user, settings):
    settings.BATCH_MAX_CELLS = 10
    with pytest.raises(InvalidInput) as caught:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1, "b": 2}] * 6)
    assert "more than 10 cells (the limit is 10), counting up to row 6" in caught.value.message
    assert caught.value.field == "rows"
    assert not Batch.objects.exists()


def test_a_row_whose_rendered_prompt_is_too_long_is_an_error_naming_the_row(user, settings):
    settings.BATCH_MAX_RENDERED_CHARS = 50
    rows = [{"text": "short"}, {"text": "y" * 60}]
    with pytest.raises(InvalidInput) as caught:
        batch_create(owner=user, prompt="Say {{text}}", rows=rows)
    assert caught.value.message.startswith("Row 2 makes a prompt of 64 characters; the limit is 50")
    assert not Batch.objects.exists()


def test_max_output_tokens_must_fit_the_database(user):
    with pytest.raises(InvalidInput) as caught:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}], max_output_tokens=2**31)
    assert caught.value.field == "max_output_tokens"
    batch = batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}],
                         max_output_tokens=MAX_OUTPUT_TOKENS)
    assert batch.max_output_tokens == MAX_OUTPUT_TOKENS


# 5. Priority and concurrency.

def test_high_priority_needs_the_permission(user):
    with pytest.raises(NotPermitted) as caught:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}], priority="high")
    assert caught.value.field == "priority"
    grant_high_priority(user)
    assert batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}],
                        priority="high").priority == Priority.HIGH


def test_staff_may_use_high_priority_without_the_permission(staff_user):
    batch = batch_create(owner=staff_user, prompt="{{a}}", rows=[{"a": 1}], priority="high")
    assert batch.priority == Priority.HIGH


def test_an_update_cannot_raise_priority_without_the_permission(make_batch):
    batch = make_batch()
    with pytest.raises(NotPermitted):
        batch_update(batch=batch, priority="high")
    assert Batch.objects.get(pk=batch.pk).priority == Priority.NORMAL


def test_concurrency_is_capped_per_user_but_staff_may_exceed_it(user, staff_user, settings):
    assert settings.BATCH_MAX_CONCURRENCY == 100
    assert (max_concurrency_for(user), max_concurrency_for(staff_user)) == (100, 500)
    with pytest.raises(NotPermitted) as caught:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}], concurrency=101)
    assert caught.value.field == "concurrency"
    assert "Concurrency above 100 is for staff; use 1 to 100." == caught.value.message
    batch = batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}], concurrency=100)
    with pytest.raises(NotPermitted):
        batch_update(batch=batch, concurrency=500)
    assert batch_create(owner=staff_user, prompt="{{a}}", rows=[{"a": 1}],
                        concurrency=500).concurrency == 500


def test_staff_may_raise_a_users_batch_above_the_cap_for_them(make_batch, staff_user):
    batch = make_batch()
    batch_update(batch=batch, concurrency=300, priority="high", by=staff_user)
    batch.refresh_from_db()
    assert (batch.concurrency, batch.priority) == (300, Priority.HIGH)


# 7. Reopening and the creation rate.

def test_resume_respects_the_active_batch_cap(make_batch, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 2
    cancelled = make_batch()
    batch_cancel(batch=cancelled)
    make_batch()
    make_batch()
    with pytest.raises(LimitReached):
        batch_resume(batch=cancelled)
    assert Batch.objects.get(pk=cancelled.pk).status == Batch.Status.CANCELLED


def test_retry_failed_respects_the_active_batch_cap(make_batch, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 1
    finished = make_batch()
    finished.results.update(status="failed", error="boom")
    Batch.objects.filter(pk=finished.pk).update(status=Batch.Status.COMPLETED_WITH_ERRORS)
    make_batch()
    with pytest.raises(LimitReached):
        batch_retry_failed(batch=finished)
    assert finished.results.filter(status="failed").count() == 3


def test_an_active_batch_may_be_resumed_at_the_cap(make_batch, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 1
    batch = make_batch()
    Batch.objects.filter(pk=batch.pk).update(paused=True, status=Batch.Status.PAUSED)
    batch.refresh_from_db()
    batch_resume(batch=batch)
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.PENDING


def test_the_creation_rate_holds_for_every_entry_point(user, other_user, settings):
    settings.BATCH_CREATE_RATE = "2/hour"
    for _ in range(2):
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}])
    with pytest.raises(RateLimited) as caught:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": 1}])
    assert 0 < caught.value.retry_after <= 3600
    assert "2 per hour" in caught.value.message
    assert batch_create(owner=other_user, prompt="{{a}}", rows=[{"a": 1}])


def test_the_default_cache_is_shared_by_every_process(settings):
    # Without REDIS_URL, the database cache: a per-process cache would multiply the rate.
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
