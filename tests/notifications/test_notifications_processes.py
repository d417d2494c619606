"""Notifications with real `qcluster` workers and a real local receiver: the event of a state
change arrives exactly once after deduplication on its id, across a worker killed mid-delivery
and across a lost task; retries reach a receiver that failed three times."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from batches import notifications
from batches.fake_gemini import FakeGemini
from batches.models import Batch, Delivery, Event
from tests.helpers import workers
from tests.helpers.engine import wait_for
from tests.helpers.receiver import HANG, Receiver
from tests.helpers.workers import wait_for_batch

qclusters = workers.qclusters

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

# What the workers run with: the local receiver allowed, short timeouts and retries.
WORKER_ENV = {"WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_TIMEOUT_S": "3", "WEBHOOK_RETRY_BASE_S": "0.2"}


@pytest.fixture
def fake_server():
    with FakeGemini() as server:
        yield server


def rows(n: int) -> list[dict]:
    return [{"text": f"row {i}"} for i in range(n)]


def sweep() -> None:
    """What the every-minute schedule does, run by the test so that it need not wait a minute."""
    notifications.sweep()


def test_a_worker_killed_mid_delivery_leads_to_a_redelivery_with_the_same_event_id(
        qclusters, fake_server, make_batch, user, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(answers=[HANG, 200]) as receiver:
        endpoint = notifications.endpoint_create(owner=user, url=receiver.url)
        first = qclusters.start(fake_server.url, **WORKER_ENV)
        batch = make_batch(rows(20))
        batch = wait_for_batch(batch.pk, timeout=60, clusters=qclusters)
        assert batch.status == Batch.Status.COMPLETED
        # The batch's state change is committed and its event is being posted: kill the worker
        # before it can write down the answer.
        assert receiver.got_request.wait(30), qclusters.logs()
        first.kill()
        delivery = Delivery.objects.get(channel="webhook")
        assert (delivery.status, delivery.attempts) == ("pending", 0)

        qclusters.start(fake_server.url, **WORKER_ENV)
        receiver.wait_for(2, timeout=60, tick=sweep)
        wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == "delivered", timeout=30)
        for _ in range(5):  # later sweeps send nothing more
            sweep()
            time.sleep(0.2)

    event = Event.objects.get(batch=batch)
    assert event.type == "batch.completed"
    assert receiver.event_ids() == [str(event.id)] * 2  # at least once...
    assert {r.body for r in receiver.requests} == {receiver.requests[0].body}
    assert len(set(receiver.event_ids())) == 1  # ...exactly once after dedupe on the id
    for request in receiver.requests:
        assert notifications.verify(endpoint.secret, timestamp=request.headers[
            "Batchsite-Timestamp"], signature=request.headers["Batchsite-Signature"],
            body=request.body)
    assert request.json["batch"]["counts"]["succeeded"] == 20


def test_an_event_whose_task_was_lost_is_delivered_by_the_sweep(
        qclusters, fake_server, make_batch, user, settings, no_tasks):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver() as receiver:
        notifications.endpoint_create(owner=user, url=receiver.url)
        batch = make_batch(rows(3))
        batch.results.update(status="succeeded", output="ok", finished_at=timezone.now())
        batch.finalise_if_done()  # its delivery task is never enqueued (no_tasks): lost
        assert no_tasks and receiver.requests == []
        qclusters.start(fake_server.url, **WORKER_ENV)
        time.sleep(1)
        assert receiver.requests == []
        receiver.wait_for(1, timeout=60, tick=sweep)
    assert receiver.event_ids() == [str(Event.objects.get().id)]


def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(
        qclusters, fake_server, make_batch, user, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(answers=[500, 500, 500, 200]) as receiver:
        notifications.endpoint_create(owner=user, url=receiver.url)
        qclusters.start(fake_server.url, **WORKER_ENV)
        batch = make_batch(rows(5))
        wait_for_batch(batch.pk, timeout=60, clusters=qclusters)
        receiver.wait_for(4, timeout=60, tick=sweep)
        delivery = Delivery.objects.get(channel="webhook")
        wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == "delivered", timeout=30)
    delivery.refresh_from_db()
    assert delivery.attempts == 4
    assert [a.status_code for a in delivery.attempts_log.order_by("at")] == [500, 500, 500, 200]
    assert len(receiver.requests) == 4 and len(set(receiver.event_ids())) == 1
