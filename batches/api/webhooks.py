"""REST API for webhook endpoints: CRUD, secret rotation, test events, the delivery log.

Owner-scoped like batches: other users' endpoints are 404, for staff too (an endpoint's secret
is its owner's alone)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework import status as http
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from batches import notifications, services
from batches.api.serializers import ErrorSerializer, _StringField
from batches.api.views import AUTH_ERRORS, BAD_INPUT, error_response
from batches.models import Delivery, DeliveryAttempt, WebhookEndpoint

DELIVERIES_SHOWN = 50
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such endpoint (or not yours).")


class _BooleanField(serializers.BooleanField):
    """true or false; DRF's BooleanField would also take 0, 1 and "yes"."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field({"type": "array",
                      "items": {"type": "string", "enum": notifications.BATCH_EVENTS}})
class EventsField(serializers.JSONField):
    """Event types, checked in one message (a ListField reports errors per index)."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if not isinstance(data, list) or not all(isinstance(e, str) for e in data):
            raise serializers.ValidationError("Send a list of event types.")
        unknown = [e for e in data if e not in notifications.BATCH_EVENTS]
        if unknown:
            known = ", ".join(notifications.BATCH_EVENTS)
            raise serializers.ValidationError(f"Unknown event {unknown[0]!r}; use any of {known}.")
        return data


class WebhookSerializer(serializers.ModelSerializer):
    url = _StringField(max_length=2000, help_text="http:// or https://; checked at send time.")
    description = _StringField(max_length=200, required=False, allow_blank=True)
    active = _BooleanField(required=False)
    events = EventsField(required=False,
                         help_text="Event types to receive; empty for every batch event.")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "active", "created_at",
                  "failing_since", "disabled_reason"]
        read_only_fields = ["id", "created_at", "failing_since", "disabled_reason"]


class WebhookWithSecretSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once: keep it now.")

    class Meta(WebhookSerializer.Meta):
        fields = WebhookSerializer.Meta.fields + ["secret"]


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["at", "ok", "status_code", "duration_ms", "response", "error"]


class DeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="event.id")
    event_type = serializers.CharField(source="event.type")
    batch = serializers.IntegerField(source="event.batch_id", allow_null=True)
    attempts_log = AttemptSerializer(many=True)

    class Meta:
        model = Delivery
        fields = ["id", "event_id", "event_type", "batch", "status", "attempts",
                  "next_attempt_at", "delivered_at", "last_error", "attempts_log"]


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(read_only=True)


@extend_schema_view(
    list=extend_schema(summary="Your webhook endpoints",
                       responses={**AUTH_ERRORS, 200: WebhookSerializer(many=True),
                                  404: OpenApiResponse(ErrorSerializer,
                                                       description="No such page.")}),
    create=extend_schema(summary="Register an endpoint; the answer holds its secret, once",
                         request=WebhookSerializer,
                         responses={**AUTH_ERRORS, 201: WebhookWithSecretSerializer,
                                    400: BAD_INPUT,
                                    429: OpenApiResponse(ErrorSerializer,
                                                         description="Too many endpoints.")}),
    retrieve=extend_schema(summary="An endpoint",
                           responses={**AUTH_ERRORS, 200: WebhookSerializer, 404: NOT_FOUND}),
    partial_update=extend_schema(summary="Change the URL, the events or the active flag",
                                 request=WebhookSerializer,
                                 responses={**AUTH_ERRORS, 200: WebhookSerializer,
                                            400: BAD_INPUT, 404: NOT_FOUND}),
    destroy=extend_schema(summary="Delete an endpoint (its pending deliveries fail)",
                          responses={**AUTH_ERRORS, 204: None, 404: NOT_FOUND}),
)
class WebhookViewSet(GenericViewSet):
    serializer_class = WebhookSerializer
    parser_classes = [JSONParser]
    lookup_url_kwarg = "webhook_id"
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        return WebhookEndpoint.objects.filter(owner=self.request.user)

    def handle_exception(self, exc):
        if isinstance(exc, services.ServiceError):
            return error_response(exc)
        return super().handle_exception(exc)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookSerializer(page, many=True).data)

    def create(self, request):
        serializer = WebhookSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = notifications.endpoint_create(owner=request.user, **serializer.validated_data)
        return Response(WebhookWithSecretSerializer(endpoint).data, status=http.HTTP_201_CREATED)

    def retrieve(self, request, webhook_id=None):
        return Response(WebhookSerializer(self.get_object()).data)

    def partial_update(self, request, webhook_id=None):
        endpoint = self.get_object()
        serializer = WebhookSerializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = notifications.endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(WebhookSerializer(endpoint).data)

    def destroy(self, request, webhook_id=None):
        notifications.endpoint_delete(endpoint=self.get_object())
        return Response(status=http.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Replace the signing secret (shown once)", request=None,
                   responses={**AUTH_ERRORS, 200: SecretSerializer, 404: NOT_FOUND})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, webhook_id=None):
        secret = notifications.endpoint_rotate_secret(endpoint=self.get_object())
        return Response({"secret": secret})

    @extend_schema(summary="Send a webhook.test event to this endpoint", request=None,
                   responses={**AUTH_ERRORS, 202: DeliverySerializer, 404: NOT_FOUND})
    @action(detail=True, methods=["post"])
    def test(self, request, webhook_id=None):
        delivery = notifications.endpoint_send_test(endpoint=self.get_object())
        return Response(DeliverySerializer(delivery).data, status=http.HTTP_202_ACCEPTED)

    @extend_schema(summary="The latest deliveries to this endpoint, with every attempt",
                   responses={**AUTH_ERRORS, 200: DeliverySerializer(many=True),
                              404: NOT_FOUND})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, webhook_id=None):
        found = (self.get_object().deliveries.select_related("event")
                 .prefetch_related("attempts_log")[:DELIVERIES_SHOWN])
        return Response(DeliverySerializer(found, many=True).data)

    @extend_schema(summary="Send one of this endpoint's deliveries again", request=None,
                   responses={**AUTH_ERRORS, 202: DeliverySerializer, 404: NOT_FOUND,
                              409: OpenApiResponse(ErrorSerializer,
                                                   description="Not attempted yet.")})
    @action(detail=True, methods=["post"],
            url_path=r"deliveries/(?P<delivery_id>\d+)/redeliver")
    def redeliver(self, request, webhook_id=None, delivery_id=None):
        endpoint = self.get_object()
        delivery = endpoint.deliveries.filter(pk=delivery_id).first()
        if delivery is None:
            return Response({"detail": "No such delivery."}, status=http.HTTP_404_NOT_FOUND)
        delivery = notifications.delivery_redeliver(delivery=delivery)
        return Response(DeliverySerializer(delivery).data, status=http.HTTP_202_ACCEPTED)
