"""/api/webhooks/ and a batch's own webhook_url through the API."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from batches.models import Batch, Delivery, WebhookEndpoint
from batches.notifications import delivery as delivery_mod

WEBHOOK_ENDPOINTS = [
    ("get", "/api/webhooks/{id}/", None),
    ("patch", "/api/webhooks/{id}/", {"active": False}),
    ("delete", "/api/webhooks/{id}/", None),
    ("post", "/api/webhooks/{id}/rotate-secret/", None),
    ("post", "/api/webhooks/{id}/test/", None),
    ("get", "/api/webhooks/{id}/deliveries/", None),
]


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_creating_an_endpoint_shows_its_secret_once(api, receiver):
    created = api.post("/api/webhooks/", {"url": receiver.url, "events": ["batch.completed"]},
                       format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["batch.completed"]
    assert "secret" not in api.get(f"/api/webhooks/{body['id']}/").json()
    assert "secret" not in api.get("/api/webhooks/").json()["results"][0]
    rotated = api.post(f"/api/webhooks/{body['id']}/rotate-secret/").json()["secret"]
    assert rotated != body["secret"]
    assert WebhookEndpoint.objects.get().secret == rotated


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/hook", "Only http:// and https:// URLs"),
    ("http://127.0.0.1/hook", "private, loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::1]/hook", "private, loopback"),
    ("https://user:pw@example.com/hook", "must not carry a user name"),
])
def test_a_url_that_cannot_receive_webhooks_is_refused_with_the_reason(api, url, message):
    answer = api.post("/api/webhooks/", {"url": url}, format="json")
    assert answer.status_code == 400
    assert message in answer.json()["url"][0]
    assert WebhookEndpoint.objects.count() == 0


def test_an_unknown_event_type_is_refused(api):
    answer = api.post("/api/webhooks/", {"url": "https://example.com/h", "events": ["batch.eaten"]},
                      format="json")
    assert answer.status_code == 400 and "events" in answer.json()


def test_at_most_the_configured_number_of_endpoints_per_user(api, settings):
    settings.WEBHOOK_MAX_ENDPOINTS = 2
    for n in range(2):
        assert api.post("/api/webhooks/", {"url": f"https://example.com/{n}"},
                        format="json").status_code == 201
    refused = api.post("/api/webhooks/", {"url": "https://example.com/3"}, format="json")
    assert refused.status_code == 429 and "2 webhook endpoints" in refused.json()["detail"]


@pytest.mark.parametrize("method, path, body", WEBHOOK_ENDPOINTS)
def test_other_users_endpoints_are_404(api, other_user, staff_user, method, path, body):
    theirs = WebhookEndpoint.objects.create(owner=other_user, url="https://example.com/bob")
    answer = getattr(api, method)(path.format(id=theirs.pk), body, format="json")
    assert answer.status_code == 404
    staff = APIClient()
    staff.force_authenticate(staff_user)
    assert getattr(staff, method)(path.format(id=theirs.pk), body, format="json").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=theirs.pk, active=True).exists()


@pytest.mark.django_db(transaction=True)
def test_send_test_event_and_redeliver_show_up_in_the_delivery_log(api, receiver, no_tasks):
    endpoint = api.post("/api/webhooks/", {"url": receiver.url}, format="json").json()
    queued = api.post(f"/api/webhooks/{endpoint['id']}/test/")
    assert queued.status_code == 202 and queued.json()["event_type"] == "webhook.test"
    delivery_mod.deliver(queued.json()["id"])
    (log,) = api.get(f"/api/webhooks/{endpoint['id']}/deliveries/").json()
    assert log["status"] == "delivered" and log["attempts_log"][0]["status_code"] == 200
    again = api.post(f"/api/webhooks/{endpoint['id']}/deliveries/{log['id']}/redeliver/")
    assert again.status_code == 202 and again.json()["status"] == "pending"
    delivery_mod.deliver(log["id"])
    assert receiver.event_ids() == [log["event_id"]] * 2
    assert Delivery.objects.get().attempts == 2


def test_deleting_an_endpoint_fails_its_pending_deliveries(api, receiver, no_tasks):
    endpoint = api.post("/api/webhooks/", {"url": receiver.url}, format="json").json()
    api.post(f"/api/webhooks/{endpoint['id']}/test/")
    assert api.delete(f"/api/webhooks/{endpoint['id']}/").status_code == 204
    assert Delivery.objects.get().status == "failed"


def test_a_batch_created_through_the_api_carries_its_webhook_url(api):
    created = api.post("/api/batches/", {"prompt": "Say {{text}}", "rows": [{"text": "a"}],
                                         "webhook_url": "https://example.com/mine"},
                       format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["webhook_url"] == "https://example.com/mine"
    assert Batch.objects.get().webhook_url == "https://example.com/mine"
    refused = api.post("/api/batches/", {"prompt": "Say {{text}}", "rows": [{"text": "a"}],
                                         "webhook_url": "http://10.0.0.5/hook"}, format="json")
    assert refused.status_code == 400 and "private" in refused.json()["webhook_url"][0]
    assert Batch.objects.count() == 1
