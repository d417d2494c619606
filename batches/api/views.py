"""REST API: thin views over batches/services.py. Other users' batches are 404 everywhere."""

from __future__ import annotations

import copy

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status as http
from rest_framework.authtoken.models import Token
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from batches import batch_rows, exports, iterations, services
from batches.api import serializers as s
from batches.api.iterations import IterationActions
from batches.api.listing import (
    OWNER_PARAM,
    SEARCH_PARAM,
    BatchPagination,
    owner_filter,
    search_text,
)
from batches.api.parsers import DepthSafeJSONParser
from batches.models import Batch, BatchResult, Progress, RowTally, row_counts, stored_counts

MB = 1024 * 1024
# Room for the form fields that travel with the file in a multipart body.
MULTIPART_OVERHEAD = MB

NOT_FOUND = OpenApiResponse(s.ErrorSerializer, description="No such batch (or not yours).")
CONFLICT = OpenApiResponse(s.ErrorSerializer,
                           description="The action does not apply to the batch's state.")
BAD_INPUT = OpenApiResponse(s.FIELD_ERRORS_SCHEMA, description="Invalid input.")


def status_param(choices: list[str]) -> OpenApiParameter:
    """`?status=a,b`: documented as the comma-separated list of known values it is."""
    return OpenApiParameter(
        "status", {"type": "array", "items": {"type": "string", "enum": choices}},
        style="form", explode=False,
        description="Only rows or batches with one of these statuses (comma-separated list).")


BATCH_STATUS_PARAM = status_param(Batch.Status.values)
RESULT_STATUS_PARAM = status_param(BatchResult.Status.values)
AUTH_ERRORS = {
    401: OpenApiResponse(s.ErrorSerializer, description="No or invalid credentials."),
    403: OpenApiResponse(s.ErrorSerializer,
                         description="CSRF check failed (session-authenticated writes)."),
}
ACTION_RESPONSES = {**AUTH_ERRORS, 200: s.BatchSerializer, 404: NOT_FOUND, 409: CONFLICT}
RETRY_AFTER = OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=[429],
                               description="Seconds to wait before trying again.")


def error_response(err: services.ServiceError) -> Response:
    """InvalidInput -> 400 with field messages, NotPermitted -> 403, ActionNotAllowed -> 409,
    LimitReached -> 429 (with Retry-After when the creation rate was reached)."""
    if isinstance(err, services.InvalidInput):
        body: dict = {err.field or "non_field_errors": [err.message]}
        if err.line is not None:
            body["line"] = err.line
        if err.column is not None:
            body["column"] = err.column
        return Response(body, status=http.HTTP_400_BAD_REQUEST)
    if isinstance(err, services.NotPermitted):
        return Response({"detail": err.message}, status=http.HTTP_403_FORBIDDEN)
    if isinstance(err, services.RateLimited):
        return Response({"detail": err.message}, status=http.HTTP_429_TOO_MANY_REQUESTS,
                        headers={"Retry-After": str(err.retry_after)})
    if isinstance(err, services.LimitReached):
        return Response({"detail": err.message}, status=http.HTTP_429_TOO_MANY_REQUESTS)
    return Response({"detail": err.message}, status=http.HTTP_409_CONFLICT)


def parse_statuses(request, choices) -> list[str]:
    raw = request.query_params.get("status", "")
    wanted = [v.strip() for v in raw.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in choices]
    if unknown:
        raise ValidationError({"status": [
            f"Unknown status {unknown[0]!r}; use one of {', '.join(choices)}."]})
    return wanted


OUTPUT_FIELDS_PARAM = OpenApiParameter(
    "fields", {"type": "array", "items": {"type": "string"}}, style="form", explode=False,
    description="Columns batches: keep only these output fields in each row's `data` "
                "(comma-separated names).")


def parse_output_fields(request, batch: Batch) -> list[str] | None:
    raw = request.query_params.get("fields")
    if raw is None:
        return None
    wanted = [v.strip() for v in raw.split(",") if v.strip()]
    names = [f.name for f in batch.output_fields]
    unknown = [v for v in wanted if v not in names]
    if unknown:
        known = ", ".join(names) if names else "none: this batch's output is text"
        raise ValidationError({"fields": [
            f"Unknown output field {unknown[0]!r}; the batch's fields are {known}."]})
    return wanted


def live_figures(batch: Batch) -> Progress:
    counts = row_counts([batch])[batch.pk]
    if batch.is_finished and stored_counts(batch) is not None:
        # Nothing moves any more: no rate query either.
        return Progress(batch, counts, 0, {"p": batch.prompt_tokens, "o": batch.output_tokens})
    return Progress.for_batch(batch, counts=counts)


PageFigures = RowTally  # what a batch list shows per batch: counts, processed, percent


def attach_page_figures(batches: list[Batch]) -> None:
    counts = row_counts(batches)
    for batch in batches:
        batch.live = PageFigures(counts[batch.pk])


class KnownCountPaginator(Paginator):
    """A paginator told its count, and which pages by row index when rows are not filtered:
    indexes run 0..total_rows-1, so page N is an index range, not an OFFSET over the batch."""

    def __init__(self, object_list, per_page, *, count: int, by_index: bool, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.__dict__["count"] = count  # overrides the cached_property: no COUNT(*)
        self.by_index = by_index

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if self.by_index:
            items = self.object_list.filter(index__gte=bottom, index__lt=top)
        else:
            items = self.object_list[bottom:top]
        return self._get_page(items, number, self)


class ResultsPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000

    def paginate_queryset(self, queryset, request, view=None):
        count, by_index = view.results_count()

        def paginator(object_list, per_page):
            return KnownCountPaginator(object_list, per_page, count=count, by_index=by_index)

        self.django_paginator_class = paginator
        return super().paginate_queryset(queryset, request, view)


def row_index(index: str) -> int:
    """A row index from the URL; a number no row can have is a 404 (int() refuses past 4,300
    digits, and the database past 64 bits)."""
    if len(index) > 18:
        raise NotFound(f"The batch has no row {index[:20]}….")
    return int(index)


class PassThroughNegotiation(BaseContentNegotiation):
    """The export picks its format from `?format=`; an Accept header must not make it 406."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# Nullable fields whose null a form body can only spell as text.
FORM_NULLABLE = ("budget",)


def form_data(request):
    """The request's data, with a form body's empty or "null" nullable fields as null."""
    if not request.content_type.startswith("multipart/"):
        return request.data
    # A shallow copy: QueryDict.copy() deep-copies, and an upload large enough to be spooled to
    # disk (a TemporaryUploadedFile) cannot be deep-copied.
    data = copy.copy(request.data)
    for name in FORM_NULLABLE:
        if name in data and data[name].strip().lower() in ("", "null"):
            data[name] = None
    return data


def too_large(request) -> Response | None:
    """Refuse an oversized body from its Content-Length, before any of it is read or parsed."""
    limit = settings.BATCH_MAX_UPLOAD_MB
    if limit and request.content_type.startswith("multipart/"):
        limit = max(limit, settings.BATCH_MAX_FILES_TOTAL_MB or 0)  # documents add up
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if not limit or length <= limit * MB + MULTIPART_OVERHEAD:
        return None
    field = "file" if request.content_type.startswith("multipart/") else "rows"
    return Response({field: [f"The upload is larger than the {limit} MB limit."]},
                    status=http.HTTP_400_BAD_REQUEST)


def upload_arguments(request, data: dict) -> dict:
    """Validated multipart fields -> service arguments: one spreadsheet, several, documents."""
    upload = data.pop("file", None)
    sheet = data.pop("sheet", "") or None
    uploads = request.FILES.getlist("file") if upload is not None else []
    if len(uploads) > 1:
        data.update(files=[(f.name, f) for f in uploads], sheet=sheet)
    elif upload is not None:
        data.update(file=upload, filename=upload.name, sheet=sheet)
    docs = data.pop("documents", None)
    if docs:
        data["documents"] = [(f.name, f) for f in docs]
    if "duplicates" in data:
        data["duplicates"] = data["duplicates"] or None
    return data


@extend_schema_view(
    list=extend_schema(summary="Your batches, newest first",
                       parameters=[BATCH_STATUS_PARAM, OWNER_PARAM],
                       responses={**AUTH_ERRORS, 200: s.BatchSummarySerializer(many=True),
                                  400: BAD_INPUT, 404: NOT_FOUND}),
    retrieve=extend_schema(summary="A batch with live progress",
                           responses={**AUTH_ERRORS, 200: s.BatchSerializer, 404: NOT_FOUND}),
    partial_update=extend_schema(
        summary="Rename or change priority, concurrency, retries, the budget or (before rows "
                "run) output; edit a draft",
        description="Workers pick the change up at their next claim. The output "
                    "(output_fields or response_schema) answers 409 once rows have run, except "
                    "on a draft. A draft can also change its prompt, system instruction, model, "
                    "temperature, max output tokens and use_cache (409 once started).",
        request=s.DraftUpdateSerializer,
        responses={**AUTH_ERRORS, 200: s.BatchSerializer, 400: BAD_INPUT, 404: NOT_FOUND,
                   409: CONFLICT}),
    destroy=extend_schema(summary="Stop the batch and delete it with its results",
                          responses={**AUTH_ERRORS, 204: None, 404: NOT_FOUND}),
)
class BatchViewSet(IterationActions, GenericViewSet):
    parser_classes = [DepthSafeJSONParser, MultiPartParser]
    pagination_class = BatchPagination
    serializer_class = s.BatchSerializer

    def get_queryset(self) -> QuerySet[Batch]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Batch.objects.none()
        return Batch.objects.visible_to(self.request.user).select_related("owner")

    def handle_exception(self, exc):
        if isinstance(exc, services.ServiceError):
            return error_response(exc)
        return super().handle_exception(exc)

    def _batch_response(self, batch: Batch, status: int = http.HTTP_200_OK,
                        **kwargs) -> Response:
        batch.live = live_figures(batch)
        return Response(s.BatchSerializer(batch).data, status=status, **kwargs)

    def list(self, request):
        batches = owner_filter(request, self.get_queryset())
        wanted = parse_statuses(request, Batch.Status.values)
        if wanted:
            batches = batches.filter(status__in=wanted)
        page = self.paginate_queryset(batches)
        attach_page_figures(page)
        return self.get_paginated_response(s.BatchSummarySerializer(page, many=True).data)

    @extend_schema(
        summary="Create a batch from a file or from rows",
        description="Answers 201 and starts processing once the batch is saved. Nothing is "
                    "created when the input is invalid.",
        request={"multipart/form-data": s.BatchFileCreateSerializer,
                 "application/json": s.BatchRowsCreateSerializer},
        parameters=[RETRY_AFTER],
        examples=[OpenApiExample(
            "Rows", request_only=True, media_type="application/json",
            value={"prompt": "Translate to French: {{text}}",
                   "rows": [{"text": "Good morning"}, {"text": "Thank you"}]})],
        responses={
            **AUTH_ERRORS,
            201: s.BatchSerializer,
            400: BAD_INPUT,
            429: OpenApiResponse(s.ErrorSerializer, description=(
                "Too many creations (see Retry-After) or too many active batches.")),
        },
    )
    def create(self, request):
        if refused := too_large(request):
            return refused
        batch = services.batch_create(owner=request.user, **self._create_input(request))
        location = reverse("api:batch-detail", args=[batch.pk])
        return self._batch_response(batch, http.HTTP_201_CREATED, headers={"Location": location})

    def _create_input(self, request) -> dict:
        if request.content_type.startswith("multipart/"):
            serializer = s.BatchFileCreateSerializer(data=form_data(request))
        else:
            serializer = s.BatchRowsCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return upload_arguments(request, dict(serializer.validated_data))

    @extend_schema(
        summary="Estimate a batch's tokens, cost and time before creating it",
        description="Same body as creating a batch; creates nothing. Input tokens come from "
                    "countTokens on a sample of at most 20 rendered prompts (cached), applied "
                    "to the characters of all of them; without countTokens, 4 characters per "
                    "token (`method` says which).",
        request={"multipart/form-data": s.BatchFileCreateSerializer,
                 "application/json": s.BatchRowsCreateSerializer},
        responses={**AUTH_ERRORS, 200: s.EstimateSerializer, 400: BAD_INPUT},
    )
    @action(detail=False, methods=["post"])
    def estimate(self, request):
        if refused := too_large(request):
            return refused
        estimate = services.batch_estimate(owner=request.user, **self._create_input(request))
        return Response({**estimate.as_dict(), "summary": estimate.lines()})

    def retrieve(self, request, pk=None):
        return self._batch_response(self.get_object())

    def partial_update(self, request, pk=None):
        batch = self.get_object()
        serializer = s.DraftUpdateSerializer(data=form_data(request))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "budget" in data:
            batch = services.batch_set_budget(batch=batch, budget=data.pop("budget"))
        if batch.is_draft or any(f in data for f in s.DraftUpdateSerializer.DRAFT_ONLY):
            return self._batch_response(iterations.batch_edit_draft(batch=batch, by=request.user,
                                                                    **data))
        return self._batch_response(services.batch_update(batch=batch, by=request.user, **data))

    def destroy(self, request, pk=None):
        services.batch_delete(batch=self.get_object())
        return Response(status=http.HTTP_204_NO_CONTENT)

    def _act(self, service) -> Response:
        batch = self.get_object()
        service(batch=batch)
        batch.refresh_from_db()
        return self._batch_response(batch)

    @extend_schema(summary="Cancel: in-flight rows finish, the rest are cancelled", request=None,
                   responses=ACTION_RESPONSES)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(services.batch_cancel)

    @extend_schema(summary="Pause: stop claiming rows", request=None,
                   responses=ACTION_RESPONSES)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(services.batch_pause)

    @extend_schema(summary="Resume a paused, cancelled or interrupted batch", request=None,
                   responses=ACTION_RESPONSES)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(services.batch_resume)

    @extend_schema(summary="Run the failed rows again", request=None,
                   responses=ACTION_RESPONSES)
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        return self._act(services.batch_retry_failed)

    @extend_schema(
        summary="Add rows: JSON rows, a spreadsheet, or documents",
        description="New rows take the next indexes, are validated like a creation (all or "
                    "nothing) and run with the batch's settings; a finished batch runs again. "
                    "409 for a cancelled batch.",
        request={"multipart/form-data": s.RowsUploadSerializer,
                 "application/json": s.RowsAddJsonSerializer},
        responses={**AUTH_ERRORS, 201: s.RowsAddedSerializer, 400: BAD_INPUT, 404: NOT_FOUND,
                   409: CONFLICT})
    @action(detail=True, methods=["post"], url_path="rows")
    def add_rows(self, request, pk=None):
        batch = self.get_object()
        if refused := too_large(request):
            return refused
        if request.content_type.startswith("multipart/"):
            serializer = s.RowsUploadSerializer(data=request.data)
        else:
            serializer = s.RowsAddJsonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = upload_arguments(request, dict(serializer.validated_data))
        added = batch_rows.batch_add_rows(batch=batch, **data)
        batch.live = live_figures(batch)
        return Response({"rows_added": added, "batch": s.BatchSerializer(batch).data},
                        status=http.HTTP_201_CREATED)

    @extend_schema(summary="Remove a pending or failed row", request=None,
                   parameters=[OpenApiParameter("index", int, OpenApiParameter.PATH)],
                   responses={**AUTH_ERRORS, 204: None, 404: NOT_FOUND, 409: CONFLICT})
    @action(detail=True, methods=["delete"], url_path=r"results/(?P<index>\d+)")
    def delete_row(self, request, pk=None, index=None):
        batch = self.get_object()
        if not batch.results.filter(index=int(index)).exists():
            raise NotFound(f"The batch has no row {index}.")
        batch_rows.batch_delete_row(batch=batch, index=int(index))
        return Response(status=http.HTTP_204_NO_CONTENT)

    def results_count(self) -> tuple[int, bool]:
        """The results list's count without COUNT(*) over the batch where possible."""
        batch, wanted = self._results_batch, self._results_statuses
        if self._results_search:
            return self._results_rows.count(), False
        if not wanted:
            return batch.total_rows, True
        counts = stored_counts(batch)
        if counts is not None:
            return sum(counts[w] for w in wanted), False
        return batch.results.filter(status__in=wanted).count(), False

    @extend_schema(summary="The batch's rows in index order",
                   parameters=[RESULT_STATUS_PARAM, OUTPUT_FIELDS_PARAM, SEARCH_PARAM],
                   responses={**AUTH_ERRORS, 200: s.ResultSerializer(many=True),
                              400: BAD_INPUT, 404: NOT_FOUND})
    @action(detail=True, methods=["get"], pagination_class=ResultsPagination,
            serializer_class=s.ResultSerializer)
    def results(self, request, pk=None):
        batch = self.get_object()
        wanted = parse_statuses(request, BatchResult.Status.values)
        text = search_text(request)
        rows = batch.results.order_by("index").defer("claim_token", "lease_expires_at",
                                                      "not_before", "conversation_key")
        if wanted:
            rows = rows.filter(status__in=wanted)
        rows = rows.search(text)  # scoped to this batch by its (batch, status, index) index
        self._results_batch, self._results_statuses = batch, wanted
        self._results_search, self._results_rows = text, rows
        only = parse_output_fields(request, batch)
        page = self.paginate_queryset(rows)
        data = s.ResultSerializer(page, many=True).data
        if only is not None:
            for row in data:
                if isinstance(row["data"], dict):
                    row["data"] = {k: v for k, v in row["data"].items() if k in only}
        return self.get_paginated_response(data)

    @extend_schema(summary="Run one failed or cancelled row again", request=None,
                   parameters=[OpenApiParameter("index", int, OpenApiParameter.PATH)],
                   responses={**AUTH_ERRORS, 200: s.ResultSerializer, 404: NOT_FOUND,
                              409: CONFLICT})
    @action(detail=True, methods=["post"], url_path=r"results/(?P<index>\d+)/retry",
            serializer_class=s.ResultSerializer)
    def retry_row(self, request, pk=None, index=None):
        batch = self.get_object()
        number = row_index(index)
        if not batch.results.filter(index=number).exists():
            raise NotFound(f"The batch has no row {number}.")
        row = services.batch_retry_row(batch=batch, index=number)
        return Response(s.ResultSerializer(row).data)

    @extend_schema(
        summary="Download the rows as CSV, JSONL or XLSX",
        description=(
            "Every row in index order with its current status: while the batch runs, rows not "
            "done yet have an empty output (filter with `status`). `q` keeps the rows the "
            "results list's `q` finds (with `status`, both apply). Columns: row (the row's line "
            "in the uploaded file, or its spreadsheet row), the input columns, then output, "
            "status, error, attempts, prompt_tokens, output_tokens, latency_ms, "
            "thoughts_tokens, cost (exact decimal digits) "
            "(prefixed `result_` if an input column has the name). A columns batch has one "
            "column per output field instead of output (lists joined with `; `; typed cells "
            "in XLSX), then status, error, thoughts_tokens and cost; its JSONL rows are "
            "{row, index, input, data, status, error, thoughts_tokens, cost}. In CSV, text that "
            "begins with =, +, -, @ (or their full-width forms) or whitespace gets a leading ' "
            "so spreadsheets do not run it; XLSX writes text as text cells, never formulas; "
            "JSONL is verbatim."),
        parameters=[
            OpenApiParameter("format", str, enum=[*exports.FORMATS], default="csv"),
            RESULT_STATUS_PARAM,
            SEARCH_PARAM,
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, exports.CONTENT_TYPES["xlsx"]): OpenApiTypes.BINARY,
            (400, "application/json"): BAD_INPUT,
            (404, "application/json"): NOT_FOUND,
            (401, "application/json"): AUTH_ERRORS[401],
        },
    )
    @action(detail=True, methods=["get"], content_negotiation_class=PassThroughNegotiation)
    def export(self, request, pk=None):
        batch = self.get_object()
        fmt = request.query_params.get("format", "csv")
        if fmt not in exports.FORMATS:
            raise ValidationError({"format": [
                f"Unknown format {fmt!r}; use one of {', '.join(exports.FORMATS)}."]})
        wanted = parse_statuses(request, BatchResult.Status.values)
        text = search_text(request)
        export = exports.export_rows(batch, fmt, statuses=wanted or None, search=text)
        response = StreamingHttpResponse(export.chunks, content_type=export.content_type)
        response["Content-Disposition"] = content_disposition_header(True, export.filename)
        return response


class TokenView(APIView):
    """The signed-in user's API token: see it, or replace it with a new one."""

    serializer_class = s.TokenSerializer

    @extend_schema(summary="Your API token (null if you have none)",
                   responses={**AUTH_ERRORS, 200: s.TokenSerializer})
    def get(self, request):
        token = Token.objects.filter(user=request.user).first()
        return Response({"token": token.key if token else None})

    @extend_schema(summary="Create or rotate your API token; the old one stops working",
                   request=None, responses={**AUTH_ERRORS, 201: s.TokenSerializer})
    def post(self, request):
        Token.objects.filter(user=request.user).delete()
        token = Token.objects.create(user=request.user)
        return Response({"token": token.key}, status=http.HTTP_201_CREATED)
