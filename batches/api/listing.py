"""The batch list's paging and filters, and the results' search: `?page=&page_size=` or
`?limit=&offset=`, `?owner=` for staff, `?q=` over a batch's rows. Bad values are a 400 naming
the parameter, never a silent default."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination, PageNumberPagination

from batches.models import SEARCH_MAX_CHARS

MAX_LIMIT = 500
# Positions past this are no list anyone pages through; the bound keeps OFFSET finite.
MAX_OFFSET = 10**9

NO_NUL = "^[^\\x00]*$"  # PostgreSQL text cannot hold NUL: refused with a 400, not a 500
OWNER_PARAM = OpenApiParameter(
    "owner", {"type": "string", "pattern": NO_NUL},
    description="Staff only: batches of this user (id or username). Anyone else gets 400.")
SEARCH_PARAM = OpenApiParameter(
    "q", {"type": "string", "maxLength": SEARCH_MAX_CHARS, "pattern": NO_NUL},
    description=f"Only rows whose input values or answer match (at most {SEARCH_MAX_CHARS} "
                "characters). PostgreSQL: full-text words, \"quoted phrases\", `or`, `-word`; "
                "SQLite: a case-insensitive substring.")


def _whole_number(request, name: str, *, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValidationError({name: [f"{name} must be a whole number, not {raw[:40]!r}."]}) \
            from None
    if not low <= value <= high:
        raise ValidationError({name: [f"{name} must be between {low} and {high}."]})
    return value


class BatchPagination(PageNumberPagination):
    """Page numbers (`page`, `page_size`) or, when `limit` or `offset` is given, an offset;
    both answer the same shape (count, next, previous, results)."""

    page_size_query_param = "page_size"
    max_page_size = 200

    def __init__(self) -> None:
        self.offset_paging: LimitOffsetPagination | None = None

    def paginate_queryset(self, queryset, request, view=None):
        limit = _whole_number(request, "limit", low=1, high=MAX_LIMIT)
        offset = _whole_number(request, "offset", low=0, high=MAX_OFFSET)
        if limit is None and offset is None:
            return super().paginate_queryset(queryset, request, view)
        for name in ("page", "page_size"):
            if name in request.query_params:
                raise ValidationError({name: [f"Use either page/page_size or limit/offset, "
                                              f"not {name} with limit/offset."]})
        self.offset_paging = LimitOffsetPagination()
        self.offset_paging.default_limit = limit or self.page_size
        self.offset_paging.max_limit = MAX_LIMIT
        return self.offset_paging.paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        if self.offset_paging is not None:
            return self.offset_paging.get_paginated_response(data)
        return super().get_paginated_response(data)

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        offset = LimitOffsetPagination().get_schema_operation_parameters(view)
        for param in offset:
            param["schema"]["minimum"] = 1 if param["name"] == "limit" else 0
            param["schema"]["maximum"] = MAX_LIMIT if param["name"] == "limit" else MAX_OFFSET
            if param["name"] == "limit":
                param["description"] += (f" (1 to {MAX_LIMIT}; instead of page and "
                                         "page_size).")
        return params + offset


def owner_filter(request, batches: QuerySet) -> QuerySet:
    """`?owner=` (id or username) narrows a staff user's list; anyone else gets a 400, so a
    client can never read its answer as another user's batches."""
    raw = request.query_params.get("owner")
    if raw is None:
        return batches
    if not request.user.is_staff:
        raise ValidationError({"owner": ["Only staff can list another user's batches; "
                                         "leave owner out to list your own."]})
    raw = raw.strip()
    if "\x00" in raw:
        raise ValidationError({"owner": ["owner cannot contain NUL characters."]})
    users = get_user_model().objects.filter(username=raw)
    if raw.isdigit() and len(raw) < 19:
        users = get_user_model().objects.filter(Q(pk=int(raw)) | Q(username=raw))
    found = list(users.values_list("pk", flat=True)[:2])
    if not found:
        raise ValidationError({"owner": [f"No user with id or username {raw[:150]!r}."]})
    # A username made of digits that is also another user's id: the id wins.
    owner = int(raw) if len(found) > 1 else found[0]
    return batches.filter(owner_id=owner)


def search_text(request) -> str:
    """`?q=`, stripped; a 400 when it is longer than SEARCH_MAX_CHARS."""
    text = request.query_params.get("q", "").strip()
    if len(text) > SEARCH_MAX_CHARS:
        raise ValidationError({"q": [f"Search text is limited to {SEARCH_MAX_CHARS} "
                                     "characters."]})
    if "\x00" in text:
        raise ValidationError({"q": ["Search text cannot contain NUL characters."]})
    return text
