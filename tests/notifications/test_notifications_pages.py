"""The Notifications page, its htmx actions, and the new-batch page's webhook URL."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse

from batches.models import Batch, Delivery, WebhookEndpoint
from batches.notifications import delivery as delivery_mod

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


def url(name, *args):
    return reverse(name, args=args)


def test_the_page_needs_a_login_and_is_in_the_menu(client, alice):
    anonymous = Client()
    assert anonymous.get(url("notifications")).status_code == 302
    page = alice.get(url("notifications")).content.decode()
    assert f'href="{url("notifications")}"' in page
    assert "No endpoints yet" in page


def test_adding_an_endpoint_shows_its_secret_once(alice, user, receiver):
    added = alice.post(url("notifications_endpoint_add"),
                       {"url": receiver.url, "events": ["batch.completed", "batch.failed"]}, **HX)
    endpoint = WebhookEndpoint.objects.get(owner=user)
    body = added.content.decode()
    assert added.status_code == 200 and endpoint.secret in body
    assert body.startswith('<div id="notifications-body"')  # the fragment, not the page
    assert endpoint.events == ["batch.completed", "batch.failed"]
    assert endpoint.secret not in alice.get(url("notifications")).content.decode()
    rotated = alice.post(url("notifications_endpoint_rotate", endpoint.pk), **HX)
    endpoint.refresh_from_db()
    assert endpoint.secret in rotated.content.decode()


def test_a_private_url_is_refused_with_the_reason_and_nothing_is_added(alice, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    answer = alice.post(url("notifications_endpoint_add"), {"url": "http://192.168.1.20/hook"},
                        **HX)
    assert answer.status_code == 400
    assert "a private, loopback, link-local or metadata address" in answer.content.decode()
    assert 'value="http://192.168.1.20/hook"' in answer.content.decode()
    assert WebhookEndpoint.objects.count() == 0


def test_output_is_escaped(alice, user):
    WebhookEndpoint.objects.create(owner=user, url="https://example.com/h",
                                   description="<script>alert(1)</script>")
    page = alice.get(url("notifications")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("name", ["notifications_endpoint_rotate", "notifications_endpoint_toggle",
                                  "notifications_endpoint_delete", "notifications_endpoint_test"])
def test_other_users_endpoints_are_404(alice, other_user, name):
    theirs = WebhookEndpoint.objects.create(owner=other_user, url="https://example.com/bob")
    assert alice.post(url(name, theirs.pk), **HX).status_code == 404
    theirs.refresh_from_db()
    assert theirs.active and Delivery.objects.count() == 0


def test_forms_need_the_csrf_token(user):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    answer = strict.post(url("notifications_endpoint_add"), {"url": "https://example.com/h"})
    assert answer.status_code == 403 and WebhookEndpoint.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_send_test_event_then_see_it_delivered_in_the_log_and_redeliver(
        alice, user, receiver, no_tasks):
    endpoint = WebhookEndpoint.objects.create(owner=user, url=receiver.url)
    queued = alice.post(url("notifications_endpoint_test", endpoint.pk), **HX).content.decode()
    assert "Test event queued" in queued
    assert 'hx-trigger="every 2s"' in queued  # the log polls while a delivery is pending
    (delivery,) = Delivery.objects.all()
    delivery_mod.deliver(delivery.pk)
    log = alice.get(url("notifications_log"), **HX).content.decode()
    assert "webhook.test" in log and "delivered" in log and "HTTP 200" in log
    assert 'hx-trigger="every 2s"' not in log  # ...and stops once nothing is pending
    redelivered = alice.post(url("notifications_redeliver", delivery.pk), **HX)
    assert "Redelivering" in redelivered.content.decode()
    delivery_mod.deliver(delivery.pk)
    assert receiver.event_ids() == [str(delivery.event_id)] * 2


def test_email_notifications_can_be_turned_off(alice, user):
    alice.post(url("notifications_settings"), {}, **HX)
    assert user.notification_settings.email_enabled is False
    alice.post(url("notifications_settings"), {"email_enabled": "on"}, **HX)
    user.notification_settings.refresh_from_db()
    assert user.notification_settings.email_enabled is True


def test_the_new_batch_page_takes_a_webhook_url(alice, user):
    data = {"prompt": "Say: {{text}}", "model": "gemini-2.5-flash", "concurrency": "4",
            "max_retries": "2", "priority": "1", "webhook_url": "https://example.com/mine"}
    f = io.BytesIO(b"text\nhello\n")
    f.name = "rows.csv"
    answer = alice.post(url("batch_new"), {**data, "file": f})
    assert answer.status_code == 302
    assert Batch.objects.get(owner=user).webhook_url == "https://example.com/mine"
    f = io.BytesIO(b"text\nhello\n")
    f.name = "rows.csv"
    refused = alice.post(url("batch_new"), {**data, "file": f, "webhook_url": "file:///etc/x"})
    assert refused.status_code == 200
    assert "Only http:// and https:// URLs" in refused.content.decode()
    assert Batch.objects.count() == 1
