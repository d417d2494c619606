"""Recording events with the state change, and delivering them to a real local receiver."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import time
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import transaction
from django.utils import timezone

from batches import notifications, services
from batches.engine import db as engine_db
from batches.models import (
    Batch,
    Delivery,
    DeliveryAttempt,
    Event,
    NotificationSettings,
    WebhookEndpoint,
)
from batches.notifications import delivery as delivery_mod
from tests.helpers.receiver import HANG, Receiver

DOCS = Path(django_settings.BASE_DIR) / "docs" / "notifications.md"


def _finish(batch: Batch) -> Batch:
    """Run no model: mark every row succeeded and finalise, as the engine's last write does."""
    batch.results.update(status="succeeded", output="ok", finished_at=timezone.now())
    batch.finalise_if_done()
    batch.refresh_from_db()
    return batch


def _deliver_all() -> None:
    for pk in Delivery.objects.due().values_list("pk", flat=True):
        delivery_mod.deliver(pk)


def _snippet(language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S).group(1)


@pytest.fixture
def endpoint(user, receiver):
    return notifications.endpoint_create(owner=user, url=receiver.url)


@pytest.mark.django_db(transaction=True)
def test_a_finished_batch_records_one_event_with_a_delivery_per_destination(
        user, make_batch, endpoint, receiver, no_tasks):
    user.email = "alice@example.com"
    user.save()
    batch = make_batch(webhook_url=receiver.url + "?batch=1")
    _finish(batch)
    event = Event.objects.get()
    assert (event.type, event.batch_id) == ("batch.completed", batch.pk)
    destinations = sorted(d.destination for d in event.deliveries.all())
    assert destinations == sorted([receiver.url, receiver.url + "?batch=1", "e-mail"])
    assert sorted(no_tasks) == sorted(event.deliveries.values_list("pk", flat=True))
    # Finalising again changes nothing and records nothing.
    assert batch.finalise_if_done() is False
    assert Event.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_no_event_is_recorded_or_enqueued_when_the_state_change_rolls_back(
        make_batch, endpoint, no_tasks):
    batch = make_batch()
    batch.results.update(status="succeeded")
    with pytest.raises(RuntimeError), transaction.atomic():
        batch.finalise_if_done()
        raise RuntimeError("the transaction dies")
    assert Batch.objects.get(pk=batch.pk).status == "pending"
    assert Event.objects.count() == 0 and no_tasks == []


@pytest.mark.django_db(transaction=True)
def test_a_webhook_is_signed_json_that_the_documented_python_snippet_verifies(
        make_batch, endpoint, receiver, no_tasks):
    batch = _finish(make_batch(name="reviews"))
    _deliver_all()
    (request,) = receiver.requests
    body = request.json
    assert body["type"] == "batch.completed"
    assert body["id"] == request.headers["Batchsite-Event-Id"] == str(Event.objects.get().id)
    assert body["batch"]["id"] == batch.pk and body["batch"]["status"] == "completed"
    assert body["batch"]["counts"]["succeeded"] == 3
    assert body["links"]["page"].endswith(f"/batches/{batch.pk}/")
    assert body["links"]["exports"]["csv"].endswith(f"/api/batches/{batch.pk}/export/?format=csv")
    namespace: dict = {}
    exec(_snippet("python"), namespace)  # noqa: S102 -- the README's own code, run as is
    assert namespace["verify"](endpoint.secret, request.headers, request.body)
    assert not namespace["verify"](endpoint.secret, request.headers, request.body + b" ")
    assert not namespace["verify"]("whsec_wrong", request.headers, request.body)
    attempt = DeliveryAttempt.objects.get()
    assert attempt.ok and attempt.status_code == 200 and attempt.response == '{"ok": true}'


@pytest.mark.django_db(transaction=True)
def test_the_documented_node_snippet_verifies_the_same_request(make_batch, endpoint, receiver,
                                                               no_tasks, tmp_path):
    _finish(make_batch())
    _deliver_all()
    (request,) = receiver.requests
    script = tmp_path / "verify.js"
    script.write_text(_snippet("javascript") + """
const fs = require("fs");
const [secret, headersFile, bodyFile] = process.argv.slice(2);
const headers = Object.fromEntries(Object.entries(JSON.parse(fs.readFileSync(headersFile)))
  .map(([k, v]) => [k.toLowerCase(), v]));
console.log(verify(secret, headers, fs.readFileSync(bodyFile)) ? "valid" : "invalid");
""")
    (tmp_path / "headers.json").write_text(json.dumps(request.headers))
    (tmp_path / "body").write_bytes(request.body)
    (tmp_path / "tampered").write_bytes(request.body.replace(b"completed", b"failed"))

    def node(body: str) -> str:
        return subprocess.run(["node", str(script), endpoint.secret, str(tmp_path / "headers.json"),
                               str(tmp_path / body)], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert node("body") == "valid"
    assert node("tampered") == "invalid"


@pytest.mark.django_db(transaction=True)
def test_500_three_times_then_200_is_delivered_on_the_fourth_attempt_with_backoff(
        settings, make_batch, endpoint, receiver, no_tasks):
    settings.WEBHOOK_RETRY_BASE_S = 0.2
    receiver.answers = [500, 500, 500, 200]
    _finish(make_batch())
    delivery = Delivery.objects.get(channel="webhook")
    for _ in range(4):
        while not Delivery.objects.due().filter(pk=delivery.pk).exists():
            time.sleep(0.02)
        delivery_mod.deliver(delivery.pk)
        delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 4
    assert [a.status_code for a in delivery.attempts_log.order_by("at")] == [500, 500, 500, 200]
    assert len(set(receiver.event_ids())) == 1 and len(receiver.requests) == 4
    # The waits before attempts 2, 3 and 4 double: 0.2, 0.4, 0.8 s.
    gaps = [b.at - a.at for a, b in pairwise(receiver.requests)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8


def test_backoff_doubles_up_to_the_maximum(settings):
    settings.WEBHOOK_RETRY_BASE_S = 30
    settings.WEBHOOK_RETRY_MAX_S = 3600
    assert [delivery_mod.backoff_s(n) for n in (1, 2, 3, 4, 8, 9, 20)] == [
        30, 60, 120, 240, 3600, 3600, 3600]


@pytest.mark.django_db(transaction=True)
def test_a_delivery_still_failing_after_the_retry_window_is_marked_failed(
        settings, make_batch, endpoint, receiver, no_tasks):
    receiver.answers = [503]
    _finish(make_batch())
    delivery = Delivery.objects.get(channel="webhook")
    Delivery.objects.filter(pk=delivery.pk).update(give_up_at=timezone.now() + timedelta(seconds=1))
    delivery_mod.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "HTTP 503")


def test_the_default_timeout_is_10_seconds(monkeypatch):
    import batchsite.settings

    monkeypatch.delenv("WEBHOOK_TIMEOUT_S", raising=False)
    assert importlib.reload(batchsite.settings).WEBHOOK_TIMEOUT_S == 10


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_hangs_is_cut_off_at_the_timeout(settings, make_batch, user, no_tasks):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_S = 1.5
    with Receiver(answers=[HANG]) as hanging:
        notifications.endpoint_create(owner=user, url=hanging.url)
        _finish(make_batch())
        delivery = Delivery.objects.get(channel="webhook")
        started = time.monotonic()
        delivery_mod.deliver(delivery.pk)
        took = time.monotonic() - started
    assert 1.5 <= took < 10  # the receiver holds it for 120 s; 10 leaves a loaded machine room
    attempt = DeliveryAttempt.objects.get()
    assert not attempt.ok and attempt.error == "No answer within 1.5 s."
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_url_resolving_to_a_private_address_is_refused_without_allow_private(
        settings, make_batch, user, no_tasks):
    with Receiver() as local:
        settings.WEBHOOK_ALLOW_PRIVATE = False
        # "localhost" passes registration (a name) and resolves to 127.0.0.1 at send time.
        url = local.url.replace("127.0.0.1", "localhost")
        notifications.endpoint_create(owner=user, url=url)
        _finish(make_batch())
        _deliver_all()
        assert local.requests == []
        attempt = DeliveryAttempt.objects.get()
        assert attempt.error.startswith("Refused: localhost resolves to")
        assert "WEBHOOK_ALLOW_PRIVATE" in attempt.error
        settings.WEBHOOK_ALLOW_PRIVATE = True
        Delivery.objects.update(next_attempt_at=timezone.now())
        _deliver_all()
        assert len(local.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_redirects_are_not_followed(make_batch, endpoint, receiver, no_tasks):
    receiver.answers = [302]
    _finish(make_batch())
    _deliver_all()
    assert len(receiver.requests) == 1
    assert Delivery.objects.get(channel="webhook").last_error == "HTTP 302"


@pytest.mark.django_db(transaction=True)
def test_the_owner_is_emailed_when_a_batch_ends_unless_they_turned_it_off(
        user, make_batch, no_tasks):
    user.email = "alice@example.com"
    user.save()
    batch = _finish(make_batch(name="reviews"))
    _deliver_all()
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "[Batchsite] reviews completed"
    assert f"/batches/{batch.pk}/" in message.body and "3 succeeded" in message.body
    notifications.settings_update(user=user, email_enabled=False)
    _finish(make_batch(name="quiet"))
    _deliver_all()
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_pausing_records_batch_paused_with_the_reason(make_batch, endpoint, receiver, no_tasks):
    by_user = make_batch()
    services.batch_pause(batch=by_user)
    by_quota = make_batch()
    with transaction.atomic():
        engine_db._apply_events(engine_db.BatchEvents(
            pauses={by_quota.pk: "The model's daily quota is spent."}), timezone.now())
    _deliver_all()
    reasons = {r.json["batch"]["id"]: (r.json["type"], r.json["reason"]) for r in receiver.requests}
    assert reasons == {by_user.pk: ("batch.paused", "user"),
                       by_quota.pk: ("batch.paused", "daily_quota")}


@pytest.mark.django_db(transaction=True)
def test_a_batch_failed_by_the_engine_records_batch_failed(make_batch, endpoint, no_tasks):
    batch = make_batch()
    with transaction.atomic():
        engine_db._apply_events(engine_db.BatchEvents(failures={batch.pk: "No API key."}),
                                timezone.now())
    assert list(Event.objects.values_list("type", "batch_id")) == [("batch.failed", batch.pk)]


@pytest.mark.django_db(transaction=True)
def test_a_long_wait_on_the_api_is_announced_once(settings, make_batch, endpoint, no_tasks):
    batch = make_batch()
    since = timezone.now() - timedelta(seconds=settings.WEBHOOK_WAITING_AFTER_S + 1)
    Batch.objects.filter(pk=batch.pk).update(api_waiting_since=since, status="running")
    assert notifications.sweep()[0] == 1
    assert notifications.sweep()[0] == 0
    assert list(Event.objects.values_list("type", flat=True)) == ["batch.waiting_on_api"]


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_failing_for_three_days_is_disabled_and_its_owner_emailed(
        user, make_batch, endpoint, receiver, no_tasks):
    user.email = "alice@example.com"
    user.save()
    notifications.settings_update(user=user, email_enabled=False)
    receiver.answers = [500]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=3, minutes=1))
    _finish(make_batch())
    _deliver_all()
    endpoint.refresh_from_db()
    assert endpoint.active is False and "3 days" in endpoint.disabled_reason
    (message,) = mail.outbox
    assert message.subject == "[Batchsite] A webhook endpoint was disabled"
    assert endpoint.url in message.body
    # Its pending delivery is not sent again while it is disabled.
    Delivery.objects.update(next_attempt_at=timezone.now())
    _deliver_all()
    assert len(receiver.requests) == 1
    assert Delivery.objects.get(channel="webhook").status == "failed"


@pytest.mark.django_db(transaction=True)
def test_a_batchs_own_webhook_url_is_signed_with_the_owners_default_secret(
        user, make_batch, receiver, no_tasks):
    batch = _finish(make_batch(webhook_url=receiver.url))
    _deliver_all()
    (request,) = receiver.requests
    secret = NotificationSettings.of(user).default_secret
    assert request.json["batch"]["id"] == batch.pk
    assert notifications.verify(secret, timestamp=request.headers["Batchsite-Timestamp"],
                                signature=request.headers["Batchsite-Signature"],
                                body=request.body)
    rotated = notifications.default_secret_rotate(user=user)
    assert rotated != secret and NotificationSettings.of(user).default_secret == rotated


def test_migrate_creates_the_every_minute_sweep(db):
    from django.core.management import call_command
    from django_q.models import Schedule

    Schedule.objects.filter(name="batches.notifications.sweep").delete()
    call_command("migrate", verbosity=0)
    sweep = Schedule.objects.get(name="batches.notifications.sweep")
    assert (sweep.func, sweep.schedule_type, sweep.minutes) == (
        "batches.notifications.tasks.sweep", Schedule.MINUTES, 1)


@pytest.mark.django_db(transaction=True)
def test_progress_events_go_only_to_endpoints_that_ask_for_them(
        settings, user, make_batch, receiver, no_tasks):
    settings.WEBHOOK_PROGRESS_STEP_PERCENT = 25
    everything = notifications.endpoint_create(owner=user, url=receiver.url + "?all")
    progress = notifications.endpoint_create(owner=user, url=receiver.url + "?progress",
                                             events=["batch.progress"])
    batch = make_batch(rows=[{"text": str(i)} for i in range(8)])
    Batch.objects.filter(pk=batch.pk).update(status="running")
    batch.results.filter(index__lt=3).update(status="succeeded")  # 37.5 %: past 25
    notifications.sweep()
    notifications.sweep()  # nothing new
    batch.results.filter(index__lt=6).update(status="succeeded")  # 75 %
    notifications.sweep()
    _deliver_all()
    got = [(r.path.split("?")[1], r.json["type"], r.json["percent"]) for r in receiver.requests]
    assert sorted(got) == [("progress", "batch.progress", 25), ("progress", "batch.progress", 75)]
    assert not Delivery.objects.filter(endpoint=everything).exists()
    assert Delivery.objects.filter(endpoint=progress).count() == 2
