"""The progress poll reads its counters and the changed rows from one snapshot (PostgreSQL), so
a row finishing between the two reads cannot show beside a count that lacks it."""

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from batches.lib.snapshots import one_snapshot
from batches.models import BatchResult

pytestmark = pytest.mark.django_db(transaction=True)


def _needs_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite reads run as they are (see one_snapshot)")


def test_reads_inside_one_snapshot_do_not_see_a_commit_made_between_them(make_batch):
    _needs_postgresql()
    batch = make_batch([{"text": "a"}, {"text": "b"}])

    def finish_a_row() -> None:  # another connection, committed at once
        BatchResult.objects.filter(batch=batch, index=0).update(status="succeeded")
        connections.close_all()

    with one_snapshot():
        before = batch.status_counts()["succeeded"]
        writer = threading.Thread(target=finish_a_row)
        writer.start()
        writer.join()
        inside = batch.status_counts()["succeeded"]
    after = batch.status_counts()["succeeded"]
    assert (before, inside, after) == (0, 0, 1)


def test_the_poll_takes_its_counts_and_rows_in_one_snapshot(client, user, make_batch):
    _needs_postgresql()
    client.force_login(user)
    batch = make_batch([{"text": "a"}, {"text": "b"}])
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("batch_detail_progress", args=[batch.pk]),
                              {"seen": "0:pending,1:pending"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    start = next(i for i, s in enumerate(sql) if "REPEATABLE READ" in s)
    end = next(i for i, s in enumerate(sql) if i > start and s.startswith("COMMIT"))
    inside = sql[start:end]
    assert any("batches_batchstatuscount" in s for s in inside)  # the counters
    assert any('"finished_at" >=' in s for s in inside)  # the rate's newest rows
    assert any('"batches_batchresult"."index" IN' in s for s in inside)  # the changed rows
