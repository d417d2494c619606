"""The Notifications page: webhook endpoints, the delivery log, e-mail and the default secret.

One view renders the page or, for htmx, its body fragment; every POST action calls a service
and renders the body again (a new or rotated secret is in that answer only: shown once)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from batches import notifications, services
from batches.models import Delivery, NotificationSettings, WebhookEndpoint

LOG_SIZE = 30


def _endpoint(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    """Only the owner's endpoints exist for them (staff included: a secret is personal)."""
    return get_object_or_404(WebhookEndpoint, pk=endpoint_id, owner=request.user)


def _log(user) -> list[Delivery]:
    return list(Delivery.objects.filter(event__owner=user)
                .select_related("event", "event__batch", "endpoint")
                .prefetch_related("attempts_log")[:LOG_SIZE])


def _render(request: HttpRequest, *, secret: str = "", secret_of: str = "", notice: str = "",
            error: str = "", status: int = 200) -> HttpResponse:
    deliveries = _log(request.user)
    context = {
        "endpoints": WebhookEndpoint.objects.filter(owner=request.user),
        "deliveries": deliveries,
        "polling": any(d.status == Delivery.Status.PENDING for d in deliveries),
        "prefs": NotificationSettings.of(request.user),
        "event_types": notifications.BATCH_EVENTS,
        "secret": secret, "secret_of": secret_of, "notice": notice, "error": error,
        "posted": request.POST if error else {},
    }
    template = ("batches/partials/notifications_body.html"
                if request.htmx and not request.htmx.history_restore_request
                else "batches/notifications.html")
    return render(request, template, context, status=status)


@login_required
@require_GET
def notifications_page(request: HttpRequest) -> HttpResponse:
    return _render(request)


@login_required
@require_GET
def notifications_log(request: HttpRequest) -> HttpResponse:
    deliveries = _log(request.user)
    return render(request, "batches/partials/notifications_log.html", {
        "deliveries": deliveries,
        "polling": any(d.status == Delivery.Status.PENDING for d in deliveries)})


@login_required
@require_POST
def endpoint_add(request: HttpRequest) -> HttpResponse:
    try:
        endpoint = notifications.endpoint_create(
            owner=request.user, url=request.POST.get("url", ""),
            events=request.POST.getlist("events"),
            description=request.POST.get("description", ""))
    except services.ServiceError as err:
        return _render(request, error=err.message, status=400)
    return _render(request, secret=endpoint.secret, secret_of=endpoint.url,
                   notice=f"Added {endpoint.url}.")


@login_required
@require_POST
def endpoint_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    secret = notifications.endpoint_rotate_secret(endpoint=endpoint)
    return _render(request, secret=secret, secret_of=endpoint.url,
                   notice=f"New secret for {endpoint.url}; the old one no longer signs.")


@login_required
@require_POST
def endpoint_toggle(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    endpoint = notifications.endpoint_update(endpoint=endpoint, active=not endpoint.active)
    state = "on" if endpoint.active else "off"
    return _render(request, notice=f"Turned {endpoint.url} {state}.")


@login_required
@require_POST
def endpoint_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    url = endpoint.url
    notifications.endpoint_delete(endpoint=endpoint)
    return _render(request, notice=f"Deleted {url}.")


@login_required
@require_POST
def endpoint_test(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    notifications.endpoint_send_test(endpoint=endpoint)
    return _render(request, notice=f"Test event queued for {endpoint.url}; watch the log below.")


@login_required
@require_POST
def delivery_redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(Delivery, pk=delivery_id, event__owner=request.user)
    try:
        notifications.delivery_redeliver(delivery=delivery)
    except services.ServiceError as err:
        return _render(request, error=err.message, status=409)
    return _render(request, notice=f"Redelivering to {delivery.destination}.")


@login_required
@require_POST
def notification_settings(request: HttpRequest) -> HttpResponse:
    enabled = request.POST.get("email_enabled") == "on"
    notifications.settings_update(user=request.user, email_enabled=enabled)
    return _render(request, notice="E-mail notifications are " + ("on." if enabled else "off."))


@login_required
@require_POST
def default_secret_rotate(request: HttpRequest) -> HttpResponse:
    secret = notifications.default_secret_rotate(user=request.user)
    return _render(request, secret=secret, secret_of="batches' own webhook URLs",
                   notice="New default secret; the old one no longer signs.")
