"""API for iterating on a prompt: start a draft, try a sample, new versions, compare, re-run.

A mixin of BatchViewSet, so every action finds its batch through the viewset's ownership-scoped
queryset (other users' batches are 404)."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status as http
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from batches import iterations
from batches.api import serializers as s
from batches.models import Batch

COMPARE_PAGE_SIZE = 100
MAX_COMPARE_PAGE_SIZE = 1000
WITH_PARAM = OpenApiParameter("with", int, description="The other batch (default: the parent).")
CHANGED_PARAM = OpenApiParameter("changed", bool, description="Only rows whose answer changed.")


class IterationActions:
    """Mixed into BatchViewSet (get_object, _batch_response and the error mapping come from it)."""

    @extend_schema(summary="Start a draft: all its rows run", request=None,
                   responses={200: s.BatchSerializer,
                              404: OpenApiResponse(s.ErrorSerializer),
                              409: OpenApiResponse(s.ErrorSerializer,
                                                   description="The batch is not a draft."),
                              429: OpenApiResponse(s.ErrorSerializer,
                                                   description="Too many active batches.")})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._batch_response(iterations.batch_start(batch=self.get_object()))

    @extend_schema(summary="Try a draft on a few rows now",
                   description="The first `size` rows (default 5), a random sample (`random`, "
                               "`seed`), or chosen `indexes`. Their answers appear in the "
                               "results; identical earlier requests come from the cache.",
                   request=s.SampleSerializer,
                   responses={202: s.SampleRunSerializer,
                              400: OpenApiResponse(s.FIELD_ERRORS_SCHEMA),
                              404: OpenApiResponse(s.ErrorSerializer),
                              409: OpenApiResponse(s.ErrorSerializer,
                                                   description="The batch is not a draft.")})
    @action(detail=True, methods=["post"], parser_classes=[JSONParser])
    def sample(self, request, pk=None):
        batch = self.get_object()
        serializer = s.SampleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        run = iterations.batch_sample(batch=batch, size=data.get("size"), seed=data["seed"],
                                      random_sample=data["random"],
                                      indexes=data.get("indexes"))
        return Response({"indexes": run.indexes, "seed": run.seed},
                        status=http.HTTP_202_ACCEPTED)

    @extend_schema(summary="A new version: a draft with this batch's rows or a corrected file",
                   request={"multipart/form-data": s.NewVersionFileSerializer,
                            "application/json": s.NewVersionSerializer},
                   responses={201: s.BatchSerializer, 400: OpenApiResponse(s.FIELD_ERRORS_SCHEMA),
                              404: OpenApiResponse(s.ErrorSerializer)})
    @action(detail=True, methods=["post"], parser_classes=[JSONParser, MultiPartParser])
    def versions(self, request, pk=None):
        batch = self.get_object()
        multipart = request.content_type.startswith("multipart/")
        serializer = (s.NewVersionFileSerializer if multipart else s.NewVersionSerializer)(
            data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        upload = data.get("file")
        version = iterations.batch_new_version(
            batch=batch, owner=request.user, file=upload,
            filename=upload.name if upload else "", sheet=data.get("sheet") or None,
            name=data["name"])
        location = reverse("api:batch-detail", args=[version.pk])
        return self._batch_response(version, http.HTTP_201_CREATED,
                                    headers={"Location": location})

    def _other(self, request, batch: Batch) -> Batch:
        raw = request.query_params.get("with", "")
        if not raw:
            if batch.parent_id is None:
                raise ValidationError({"with": ["The batch has no parent; name the batch to "
                                                "compare with in `with`."]})
            raw = str(batch.parent_id)
        if not raw.isdigit():
            raise ValidationError({"with": [f"{raw!r} is not a batch id."]})
        return get_object_or_404(self.get_queryset(), pk=int(raw))

    @extend_schema(summary="Compare with another batch (default: the parent), row by row",
                   description="`a` is the other batch, `b` this one. `field_changes` counts, "
                               "for JSON-object answers, the rows in which each field changed.",
                   parameters=[WITH_PARAM, CHANGED_PARAM,
                               OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
                   responses={200: s.ComparisonSerializer,
                              400: OpenApiResponse(s.FIELD_ERRORS_SCHEMA,
                                                   description="No `with` and no parent."),
                              404: OpenApiResponse(s.ErrorSerializer)})
    @action(detail=True, methods=["get"])
    def compare(self, request, pk=None):
        batch = self.get_object()
        other = self._other(request, batch)
        page, size = _int_param(request, "page", 1), _int_param(request, "page_size",
                                                                  COMPARE_PAGE_SIZE)
        size = min(size, MAX_COMPARE_PAGE_SIZE)
        comparison = iterations.compare_batches(
            other, batch, changed_only=_flag(request, "changed"), offset=(page - 1) * size,
            limit=size)
        return Response(s.ComparisonSerializer(comparison).data)

    @extend_schema(summary="The comparison as one CSV (both answers per row)",
                   parameters=[WITH_PARAM, CHANGED_PARAM],
                   responses={(200, "text/csv"): OpenApiTypes.BINARY,
                              (400, "application/json"): OpenApiResponse(
                                  s.FIELD_ERRORS_SCHEMA, description="No `with` and no parent."),
                              (404, "application/json"): OpenApiResponse(s.ErrorSerializer)})
    @action(detail=True, methods=["get"], url_path="compare/export")
    def compare_export(self, request, pk=None):
        batch = self.get_object()
        other = self._other(request, batch)
        response = StreamingHttpResponse(
            iterations.compare_csv(other, batch, changed_only=_flag(request, "changed")),
            content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(
            True, f"compare-{other.pk}-{batch.pk}.csv")
        return response

    @extend_schema(summary="Run chosen rows again (succeeded ones too), bypassing the cache",
                   operation_id="batches_results_rerun", request=s.RerunSerializer,
                   responses={200: s.BatchSerializer, 400: OpenApiResponse(s.FIELD_ERRORS_SCHEMA),
                              404: OpenApiResponse(s.ErrorSerializer),
                              409: OpenApiResponse(s.ErrorSerializer)})
    @action(detail=True, methods=["post"], url_path="results/retry", parser_classes=[JSONParser])
    def rerun(self, request, pk=None):
        batch = self.get_object()
        serializer = s.RerunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        iterations.batch_rerun_rows(batch=batch, indexes=serializer.validated_data["indexes"])
        batch.refresh_from_db()
        return self._batch_response(batch)


def _int_param(request, name: str, default: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationError({name: [f"{name} must be a whole number of at least 1."]})
    return int(raw)


def _flag(request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")
