"""Admin for notifications: endpoints (secrets never shown), events, deliveries with every
attempt, and the "Redeliver" action. Registered by batches/admin.py importing this module."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet

from batches.notifications import endpoints
from batches.notifications.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    NotificationSettings,
    WebhookEndpoint,
)
from batches.notifications.safety import UnsafeURL, check_url
from batches.services import ServiceError


class WebhookEndpointForm(forms.ModelForm):
    def clean_url(self) -> str:
        try:
            return check_url(self.cleaned_data["url"])
        except UnsafeURL as err:
            raise forms.ValidationError(str(err)) from err


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("id", "url", "owner", "active", "failing_since", "created_at")
    list_filter = ("active",)
    list_select_related = ("owner",)
    search_fields = ("url", "description", "owner__username")
    exclude = ("secret",)
    readonly_fields = ("owner", "created_at", "failing_since", "disabled_reason")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request) -> bool:
        return False  # a secret is shown once, to its owner, on the Notifications page


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("at", "ok", "status_code", "duration_ms", "error", "response")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.action(description="Redeliver the selected deliveries")
def redeliver(modeladmin: admin.ModelAdmin, request, queryset: QuerySet) -> None:
    done = 0
    for delivery in queryset:
        try:
            endpoints.delivery_redeliver(delivery=delivery)
            done += 1
        except ServiceError as err:
            modeladmin.message_user(request, f"{delivery}: {err.message}", messages.WARNING)
    modeladmin.message_user(request, f"Redelivering {done} deliveries.")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "channel", "destination", "status", "attempts",
                    "next_attempt_at", "delivered_at")
    list_filter = ("status", "channel")
    list_select_related = ("event",)
    search_fields = ("url", "event__id")
    inlines = [DeliveryAttemptInline]
    actions = [redeliver]
    readonly_fields = ("event", "channel", "endpoint", "url", "status", "attempts",
                       "next_attempt_at", "give_up_at", "locked_until", "delivered_at",
                       "last_error")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "batch", "owner", "reason", "created_at")
    list_filter = ("type",)
    list_select_related = ("batch", "owner")
    search_fields = ("id",)
    readonly_fields = ("id", "owner", "batch", "type", "reason", "created_at", "payload", "key")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ("user", "email_enabled")
    exclude = ("default_secret",)
    readonly_fields = ("user",)
