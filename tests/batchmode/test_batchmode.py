"""Batch mode in-process against the fake's Batch Mode: submitting, results by key, the
batch-mode price, per-row errors, missing rows, the watchdog, cancel, structured output."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batches import costs, services
from batches.batchmode import collect, submit
from batches.models import Batch, BatchResult, ProviderJob
from tests.helpers import batchmode as helpers
from tests.helpers import costs as cost_helpers
from tests.helpers import engine as engine_helpers

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued
prices = cost_helpers.prices
batch_settings = helpers.batch_settings
drive = helpers.drive

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("batch_settings", "enqueued")]


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def online_cost(row: BatchResult) -> Decimal:
    price = costs.price_for(row.batch.model_name)
    return price.cost(prompt=row.prompt_tokens, candidates=row.output_tokens)


@pytest.mark.usefixtures("prices")
def test_a_batch_mode_batch_runs_in_one_job_at_half_the_online_price(make_batch, fake):
    fake.configure(batch_shuffle=True)
    batch = drive(make_batch(rows(40), mode="batch"))
    assert batch.status == Batch.Status.COMPLETED
    job = batch.provider_jobs.get()
    assert (job.state, job.row_count, job.succeeded_rows, job.input_file) == (
        "JOB_STATE_SUCCEEDED", 40, 40, "")
    assert job.name.startswith("batches/")
    for row in batch.results.all():
        assert row.output == f"ECHO: Say: row {row.index}"  # by key, though shuffled
        assert row.cost == (online_cost(row) / 2).quantize(Decimal("1e-9"))
    assert batch.cost_spent == sum(r.cost for r in batch.results.all())
    assert fake.stats.total == 0  # no online generateContent call


def test_a_large_batch_is_split_into_jobs_sent_as_files(make_batch, fake, batch_settings):
    batch_settings.BATCH_MODE_MAX_ROWS = 40
    batch_settings.BATCH_MODE_INLINE_BYTES = 1000
    batch = drive(make_batch(rows(100), mode="batch"))
    jobs = list(batch.provider_jobs.order_by("id"))
    assert [j.row_count for j in jobs] == [40, 40, 20]
    assert all(j.input_file.startswith("files/") for j in jobs)
    assert batch.status_counts()["succeeded"] == 100


def test_jobs_are_cut_at_the_byte_limit_and_the_rest_waits_for_the_next(make_batch, fake,
                                                                       batch_settings):
    batch_settings.BATCH_MODE_MAX_BYTES = 2500
    batch = drive(make_batch(rows(30), mode="batch"))
    jobs = list(batch.provider_jobs.order_by("id"))
    assert len(jobs) > 1 and all(j.byte_count <= 2500 for j in jobs)
    assert sum(j.row_count for j in jobs) == 30
    assert batch.status == Batch.Status.COMPLETED


def test_rows_missing_from_the_results_are_resubmitted(make_batch, fake):
    fake.configure(batch_missing_rate=0.2)
    batch = drive(make_batch(rows(50), mode="batch"))
    assert batch.status == Batch.Status.COMPLETED
    first = batch.provider_jobs.order_by("id").first()
    assert first.returned_rows > 0 and first.returned_rows + first.succeeded_rows == 50
    assert batch.provider_jobs.count() > 1
    assert all(r.attempts == 1 for r in batch.results.all())  # a missing row costs no attempt


def test_per_row_errors_are_retried_in_a_new_job_or_fail_with_their_own_error(make_batch, fake):
    fake.configure(batch_all_failed_jobs=1, fail_permanently=("row 3",))
    batch = drive(make_batch(rows(10), mode="batch"))
    first = batch.provider_jobs.order_by("id").first()
    assert first.state == "JOB_STATE_SUCCEEDED"
    assert (first.succeeded_rows, first.failed_rows) == (0, 10)
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    assert (batch.succeeded_count, batch.failed_count) == (9, 1)
    failed = batch.results.get(status="failed")
    assert failed.index == 3 and "400" in failed.error


@pytest.mark.usefixtures("prices")
def test_a_job_stuck_pending_past_the_wait_runs_its_rows_online(make_batch, fake,
                                                                batch_settings):
    fake.configure(batch_stuck_jobs=1)
    batch = make_batch(rows(20), mode="batch")
    submit.submit(batch.pk)
    collect.poll_all(enqueue=lambda b: None)
    job = batch.provider_jobs.get()
    assert job.state == "JOB_STATE_PENDING" and job.finished_at is None
    batch_settings.BATCH_MODE_MAX_WAIT = 0.0
    batch = drive(batch)
    job.refresh_from_db()
    assert job.state == "JOB_STATE_CANCELLED" and "watchdog" in job.error
    assert batch.provider_jobs.count() == 1  # no new job: the rows ran online
    assert batch.status == Batch.Status.COMPLETED
    assert "run online at the online price" in batch.last_error
    row = batch.results.first()
    assert row.online and row.cost == online_cost(row)
    assert fake.stats.total == 20


def test_without_fallback_a_stuck_job_is_replaced_by_a_new_job(make_batch, fake,
                                                               batch_settings):
    fake.configure(batch_stuck_jobs=1)
    batch = make_batch(rows(20), mode="batch", fallback_online=False)
    submit.submit(batch.pk)
    batch_settings.BATCH_MODE_MAX_WAIT = 0.0
    batch = drive(batch)
    states = list(batch.provider_jobs.order_by("id").values_list("state", flat=True))
    assert states == ["JOB_STATE_CANCELLED", "JOB_STATE_SUCCEEDED"]
    assert batch.status == Batch.Status.COMPLETED and fake.stats.total == 0


def test_an_expired_job_returns_its_rows(make_batch, fake):
    fake.configure(batch_expire_jobs=1)
    batch = drive(make_batch(rows(15), mode="batch", fallback_online=False))
    states = list(batch.provider_jobs.order_by("id").values_list("state", flat=True))
    assert states == ["JOB_STATE_EXPIRED", "JOB_STATE_SUCCEEDED"]
    assert batch.status == Batch.Status.COMPLETED


def test_writing_a_jobs_results_twice_changes_nothing(make_batch, fake):
    batch = make_batch(rows(10), mode="batch")
    submit.submit(batch.pk)
    job = batch.provider_jobs.get()
    from batches.batchmode import client

    remote = client.get(job.name)
    assert remote.state == "JOB_STATE_SUCCEEDED"
    first = collect.write_chunk(batch, job, remote.inline)
    snapshot = list(batch.results.values_list("id", "status", "output", "attempts", "cost"))
    second = collect.write_chunk(batch, job, remote.inline)
    assert first == (10, 0) and second == (0, 0)
    assert list(batch.results.values_list("id", "status", "output", "attempts", "cost")) == \
        snapshot
    batch.refresh_from_db()
    assert batch.prompt_tokens == sum(r.prompt_tokens for r in batch.results.all())


def test_cancel_while_a_job_runs_cancels_it_and_keeps_answers_that_raced_in(make_batch, fake):
    fake.configure(batch_running_s=3.0)
    batch = make_batch(rows(40), mode="batch")
    submit.submit(batch.pk)
    import time

    time.sleep(0.5)  # a share of the job's running time: that share of rows is answered
    services.batch_cancel(batch=batch)
    collect.cancel_open_jobs(batch.pk)
    assert fake.app.batches.counts["cancelled"] == 1
    batch = drive(batch)
    counts = batch.status_counts()
    assert batch.status == Batch.Status.CANCELLED
    assert counts["succeeded"] > 0 and counts["cancelled"] > 0
    assert counts["succeeded"] + counts["cancelled"] == 40
    assert batch.provider_jobs.get().state == "JOB_STATE_CANCELLED"


def test_pause_stops_submitting_and_resume_submits_again(make_batch, fake):
    batch = make_batch(rows(5), mode="batch")
    services.batch_pause(batch=batch)
    assert submit.submit(batch.pk).jobs == []
    services.batch_resume(batch=batch)
    assert drive(batch).status == Batch.Status.COMPLETED


FIELDS = [{"name": "label", "type": "string"}]


def test_structured_output_is_validated_and_repaired_in_the_next_job(make_batch, fake):
    fake.configure(json_invalid_once=("row 1",))
    batch = drive(make_batch(rows(3), mode="batch", fallback_online=False,
                             output_fields=FIELDS))
    assert batch.status == Batch.Status.COMPLETED
    repaired = batch.results.get(index=1)
    assert repaired.data == {"label": repaired.data["label"]} and repaired.attempts == 2
    assert batch.provider_jobs.count() == 2 and fake.stats.total == 0
    assert repaired.prompt_tokens > batch.results.get(index=0).prompt_tokens  # both calls billed


def test_the_mode_is_checked(make_batch):
    with pytest.raises(services.InvalidInput) as err:
        make_batch(rows(2), mode="fast")
    assert err.value.field == "mode"
    with pytest.raises(services.InvalidInput) as err:
        make_batch([{"text": "a", "c": "1"}], mode="batch", conversation_column="c")
    assert err.value.field == "mode"
    assert ProviderJob.objects.count() == 0


def test_delete_cancels_the_open_jobs_at_the_provider(make_batch, fake, monkeypatch):
    from batches.batchmode import tasks

    ran = []
    monkeypatch.setattr("batches.services.async_task",
                        lambda name, *args: ran.append(getattr(tasks, name.rsplit(".", 1)[1])(
                            *args)))
    fake.configure(batch_stuck_jobs=1)
    batch = make_batch(rows(5), mode="batch")
    submit.submit(batch.pk)
    services.batch_delete(batch=batch)
    assert ran == ["1 jobs cancelled"] and fake.app.batches.counts["cancelled"] == 1
    assert not ProviderJob.objects.exists()


def test_a_retried_row_of_a_batch_that_fell_back_online_goes_in_a_job_again(make_batch, fake):
    batch = make_batch(rows(2), mode="batch")
    batch.results.update(status="failed", online=True, repair={"answer": "x", "note": "y"})
    batch.results.retry()
    assert list(batch.results.values_list("online", "repair")) == [(False, None)] * 2
