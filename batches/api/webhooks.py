"""REST API for webhook endpoints: CRUD, secret rotation, test events, the delivery log.

Owner-scoped like batches: other users' endpoints are 404, for staff too (an endpoint's secret
is its owner's alone)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework import status as http
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from batches import notifications, services
from batches.api.serializers import ErrorSerializer
from batches.api.views import error_response
from batches.models import Delivery, DeliveryAttempt, WebhookEndpoint

DELIVERIES_SHOWN = 50


class WebhookSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=notifications.BATCH_EVENTS), required=False,
        help_text="Event types to receive; empty for every batch event.")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "active", "created_at",
                  "failing_since", "disabled_reason"]
        read_only_fields = ["id", "created_at", "failing_since", "disabled_reason"]
        extra_kwargs = {"url": {"validators": []}}  # the service says why a URL is refused

    def to_internal_value(self, data):
        if "url" in data and not isinstance(data["url"], str):
            raise serializers.ValidationError({"url": ["Send the URL as a string."]})
        return super().to_internal_value(data)


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


class WebhookViewSet(GenericViewSet):
    serializer_class = WebhookSerializer

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

    @extend_schema(request=WebhookSerializer, responses={201: WebhookWithSecretSerializer,
                                                         429: ErrorSerializer})
    def create(self, request):
        serializer = WebhookSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = notifications.endpoint_create(owner=request.user, **serializer.validated_data)
        return Response(WebhookWithSecretSerializer(endpoint).data, status=http.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(WebhookSerializer(self.get_object()).data)

    def partial_update(self, request, pk=None):
        endpoint = self.get_object()
        serializer = WebhookSerializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = notifications.endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(WebhookSerializer(endpoint).data)

    def destroy(self, request, pk=None):
        notifications.endpoint_delete(endpoint=self.get_object())
        return Response(status=http.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Replace the signing secret (shown once)", request=None,
                   responses={200: SecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        secret = notifications.endpoint_rotate_secret(endpoint=self.get_object())
        return Response({"secret": secret})

    @extend_schema(summary="Send a webhook.test event to this endpoint", request=None,
                   responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        delivery = notifications.endpoint_send_test(endpoint=self.get_object())
        return Response(DeliverySerializer(delivery).data, status=http.HTTP_202_ACCEPTED)

    @extend_schema(summary="The latest deliveries to this endpoint, with every attempt",
                   responses={200: DeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        found = (self.get_object().deliveries.select_related("event")
                 .prefetch_related("attempts_log")[:DELIVERIES_SHOWN])
        return Response(DeliverySerializer(found, many=True).data)

    @extend_schema(summary="Send one of this endpoint's deliveries again", request=None,
                   responses={202: DeliverySerializer, 404: OpenApiResponse(ErrorSerializer)})
    @action(detail=True, methods=["post"],
            url_path=r"deliveries/(?P<delivery_id>\d+)/redeliver")
    def redeliver(self, request, pk=None, delivery_id=None):
        endpoint = self.get_object()
        delivery = endpoint.deliveries.filter(pk=delivery_id).first()
        if delivery is None:
            return Response({"detail": "No such delivery."}, status=http.HTTP_404_NOT_FOUND)
        delivery = notifications.delivery_redeliver(delivery=delivery)
        return Response(DeliverySerializer(delivery).data, status=http.HTTP_202_ACCEPTED)
