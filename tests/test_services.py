import pytest
from django.db import IntegrityError
from django_q.models import OrmQ

from batches.models import Batch, BatchResult, Priority
from batches.services import (
    ActionNotAllowed,
    InvalidInput,
    LimitReached,
    batch_cancel,
    batch_create,
    batch_delete,
    batch_pause,
    batch_resume,
    batch_retry_failed,
    batch_retry_row,
    batch_update,
    results_retry,
)
from tests.conftest import csv_file


def set_rows(batch, status, indexes=None, **fields):
    rows = batch.results.all()
    if indexes is not None:
        rows = rows.filter(index__in=indexes)
    rows.update(status=status, **fields)


def test_it_creates_a_batch_with_one_rendered_row_per_input_row(user):
    batch = batch_create(
        owner=user,
        prompt="Summarise {{ text }} for {{name}}",
        file=csv_file("name,text\nAnn,hello\nBob,\"multi\nline\"\n"),
        filename="people.csv",
    )
    assert batch.columns == ["name", "text"]
    assert batch.total_rows == 2
    assert batch.name == "people"
    rows = list(batch.results.order_by("index").values_list("index", "input", "prompt", "status"))
    assert rows == [
        (0, {"name": "Ann", "text": "hello"}, "Summarise hello for Ann", "pending"),
        (1, {"name": "Bob", "text": "multi\nline"}, "Summarise multi\nline for Bob", "pending"),
    ]


def test_it_enqueues_work_only_after_the_transaction_commits(
    user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch_create(owner=user, prompt="{{text}}", rows=[{"text": "a"}])
        assert OrmQ.objects.count() == 0
    assert len(callbacks) == 1
    callbacks[0]()
    assert OrmQ.objects.count() >= 1


def test_an_unknown_placeholder_is_rejected_and_nothing_is_created(user):
    with pytest.raises(InvalidInput) as err:
        batch_create(owner=user, prompt="{{txt}}", rows=[{"text": "a"}])
    assert err.value.field == "prompt"
    assert "{{txt}} is not a column" in err.value.message
    assert "text" in err.value.message
    assert Batch.objects.count() == 0


def test_a_bad_row_late_in_the_file_rolls_back_the_whole_batch(user):
    lines = ["a,b"] + [f"{i},x" for i in range(5000)] + ["1,2,3"]
    with pytest.raises(InvalidInput) as err:
        batch_create(owner=user, prompt="{{a}}", file=csv_file("\n".join(lines)),
                     filename="big.csv")
    assert err.value.line == 5002
    assert Batch.objects.count() == 0
    assert BatchResult.objects.count() == 0


def test_a_header_without_rows_is_rejected(user):
    with pytest.raises(InvalidInput, match="no rows"):
        batch_create(owner=user, prompt="{{a}}", file=csv_file("a,b\n"), filename="x.csv")
    assert Batch.objects.count() == 0


def test_the_conversation_column_must_exist_and_keys_are_stored(user):
    with pytest.raises(InvalidInput) as err:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": "1"}], conversation_column="chat")
    assert err.value.field == "conversation_column"
    batch = batch_create(owner=user, prompt="{{a}}", conversation_column="chat",
                         rows=[{"a": "1", "chat": "c1"}, {"a": "2", "chat": ""}])
    assert list(batch.results.values_list("conversation_key", flat=True)) == ["c1", ""]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"concurrency": 0}, "concurrency"),
        ({"max_retries": 99}, "max_retries"),
        ({"temperature": 3.5}, "temperature"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_out_of_range_settings_are_rejected_with_their_field(user, kwargs, field):
    with pytest.raises(InvalidInput) as err:
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": "1"}], **kwargs)
    assert err.value.field == field


def test_the_number_of_active_batches_per_user_is_capped(user, other_user, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 2
    batch_create(owner=user, prompt="{{a}}", rows=[{"a": "1"}])
    batch_create(owner=user, prompt="{{a}}", rows=[{"a": "1"}])
    with pytest.raises(LimitReached):
        batch_create(owner=user, prompt="{{a}}", rows=[{"a": "1"}])
    batch_create(owner=other_user, prompt="{{a}}", rows=[{"a": "1"}])


def test_cancel_cancels_pending_rows_and_finishes_when_nothing_runs(make_batch):
    batch = make_batch(rows=[{"text": str(i)} for i in range(4)])
    set_rows(batch, "succeeded", [0])
    assert batch_cancel(batch=batch) == 3
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert batch.cancelled_count == 3 and batch.succeeded_count == 1
    with pytest.raises(ActionNotAllowed, match="already cancelled"):
        batch_cancel(batch=batch)


def test_cancel_lets_running_rows_finish_before_the_batch_ends(make_batch):
    batch = make_batch()
    set_rows(batch, "running", [0])
    batch_cancel(batch=batch)
    batch.refresh_from_db()
    assert batch.cancel_requested and batch.status == Batch.Status.PENDING
    set_rows(batch, "succeeded", [0])
    assert batch.finalise_if_done()
    assert not batch.finalise_if_done()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED


def test_pause_and_resume(make_batch):
    batch = make_batch()
    assert batch_pause(batch=batch) == 3
    assert batch.status == Batch.Status.PAUSED and batch.paused
    with pytest.raises(ActionNotAllowed):
        batch_pause(batch=batch)
    batch_resume(batch=batch)
    assert batch.status == Batch.Status.PENDING and not batch.paused


def test_resume_after_cancel_puts_cancelled_rows_back(make_batch):
    batch = make_batch()
    batch_cancel(batch=batch)
    assert batch_resume(batch=batch) == 3
    assert batch.status == Batch.Status.PENDING
    assert set(batch.results.values_list("status", flat=True)) == {"pending"}


def test_resume_of_a_completed_batch_is_refused(make_batch):
    batch = make_batch()
    set_rows(batch, "succeeded")
    batch.finalise_if_done()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED
    with pytest.raises(ActionNotAllowed, match="completed"):
        batch_resume(batch=batch)


def test_resume_rescues_rows_stranded_by_a_dead_worker(make_batch):
    from datetime import timedelta

    from django.utils import timezone

    batch = make_batch()
    set_rows(batch, "running", [1], lease_expires_at=timezone.now() - timedelta(minutes=5))
    set_rows(batch, "succeeded", [0, 2])
    assert batch_resume(batch=batch) == 1
    assert batch.results.get(index=1).status == "pending"


def test_retry_failed_resets_failed_rows_and_reopens_the_batch(make_batch):
    batch = make_batch()
    set_rows(batch, "succeeded", [0])
    set_rows(batch, "failed", [1, 2], attempts=4, error="boom")
    batch.finalise_if_done()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    assert batch_retry_failed(batch=batch) == 2
    row = batch.results.get(index=1)
    assert (row.status, row.attempts, row.error) == ("pending", 0, "")
    assert batch.status == Batch.Status.PENDING and batch.finished_at is None
    with pytest.raises(ActionNotAllowed, match="no failed rows"):
        batch_retry_failed(batch=batch)


def test_retry_row_only_accepts_failed_or_cancelled_rows(make_batch):
    batch = make_batch()
    set_rows(batch, "succeeded", [0])
    set_rows(batch, "failed", [1], error="bad")
    with pytest.raises(ActionNotAllowed, match="Row 0 is succeeded"):
        batch_retry_row(batch=batch, index=0)
    with pytest.raises(InvalidInput):
        batch_retry_row(batch=batch, index=99)
    assert batch_retry_row(batch=batch, index=1).status == "pending"


def test_results_retry_skips_rows_that_are_not_failed(make_batch):
    batch = make_batch()
    set_rows(batch, "failed", [0])
    set_rows(batch, "succeeded", [1])
    assert results_retry(results=batch.results.all()) == 1
    assert batch.results.get(index=1).status == "succeeded"


def test_update_changes_only_what_is_given(make_batch):
    batch = make_batch()
    batch_update(batch=batch, name="Renamed", priority="low", concurrency=5)
    assert (batch.name, batch.priority, batch.concurrency, batch.max_retries) == (
        "Renamed", Priority.LOW, 5, 3)
    with pytest.raises(InvalidInput):
        batch_update(batch=batch, concurrency=0)


def test_delete_removes_the_batch_and_its_rows(make_batch):
    batch = make_batch()
    batch_delete(batch=batch)
    assert not Batch.objects.exists() and not BatchResult.objects.exists()


def test_row_indexes_are_unique_within_a_batch(make_batch):
    batch = make_batch()
    with pytest.raises(IntegrityError):
        BatchResult.objects.create(batch=batch, index=0, prompt="dup")


def test_progress_reports_counts_and_percent(make_batch):
    batch = make_batch(rows=[{"text": str(i)} for i in range(4)])
    set_rows(batch, "succeeded", [0, 1])
    set_rows(batch, "failed", [2])
    progress = batch.progress()
    assert progress.counts["succeeded"] == 2 and progress.counts["pending"] == 1
    assert progress.processed == 3 and progress.total == 4 and progress.percent == 75.0


def test_users_see_only_their_batches_and_staff_see_all(make_batch, user, other_user,
                                                         staff_user):
    mine = make_batch()
    theirs = make_batch(owner=other_user)
    assert list(Batch.objects.visible_to(user)) == [mine]
    assert set(Batch.objects.visible_to(staff_user)) == {mine, theirs}


def test_an_encoding_fallback_is_kept_as_a_warning_on_the_batch(user):
    import io

    f = io.BytesIO("name,text\nJosé,Olé\n".encode("cp1252"))
    batch = batch_create(owner=user, prompt="{{text}}", file=f, filename="legacy.csv")
    batch.refresh_from_db()
    assert "cp1252" in batch.last_error or "Windows-1252" in batch.last_error
    assert batch.results.get(index=0).input == {"name": "José", "text": "Olé"}


def test_resume_after_a_batch_level_error_clears_the_error(make_batch):
    batch = make_batch()
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.FAILED,
                                             last_error="GEMINI_API_KEY is not set")
    batch.refresh_from_db()
    batch_resume(batch=batch)
    assert batch.status == Batch.Status.PENDING and batch.last_error == ""
