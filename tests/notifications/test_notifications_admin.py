"""The admin shows deliveries with every attempt and redelivers; it never shows a secret."""

from __future__ import annotations

import pytest
from django.urls import reverse

from batches import notifications
from batches.models import Delivery, WebhookEndpoint
from batches.notifications import delivery as delivery_mod


@pytest.fixture
def admin_client(client, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    return client


@pytest.mark.django_db(transaction=True)
def test_the_admin_lists_attempts_and_redelivers_without_showing_secrets(
        admin_client, user, receiver, no_tasks):
    endpoint = notifications.endpoint_create(owner=user, url=receiver.url)
    delivery = notifications.endpoint_send_test(endpoint=endpoint)
    delivery_mod.deliver(delivery.pk)
    page = admin_client.get(reverse("admin:batches_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200 and "{&quot;ok&quot;: true}" in page.content.decode()
    endpoint_page = admin_client.get(reverse("admin:batches_webhookendpoint_change",
                                             args=[endpoint.pk])).content.decode()
    assert WebhookEndpoint.objects.get().secret not in endpoint_page
    admin_client.post(reverse("admin:batches_delivery_changelist"),
                      {"action": "redeliver", "_selected_action": [delivery.pk]})
    assert Delivery.objects.get().status == "pending" and no_tasks[-1] == delivery.pk
    delivery_mod.deliver(delivery.pk)
    assert len(receiver.requests) == 2


def test_the_admin_refuses_a_private_url_with_the_reason(admin_client, user, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    endpoint = WebhookEndpoint.objects.create(owner=user, url="https://example.com/h")
    answer = admin_client.post(
        reverse("admin:batches_webhookendpoint_change", args=[endpoint.pk]),
        {"url": "http://10.0.0.1/h", "description": "", "events": "[]", "active": "on"})
    assert answer.status_code == 200 and "private, loopback" in answer.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == "https://example.com/h"
