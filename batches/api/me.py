"""/api/me/settings/: the signed-in user's own defaults for new batches (docs/grounding.md).

Only ever the requesting user's row: there is no id in the URL, so no other user's settings can
be named. PUT replaces every field (missing ones go back to the server's defaults), PATCH
changes only the fields sent; services.user_settings_update checks them.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status as http
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import preferences, services
from batches.api import serializers as s
from batches.api.parsers import DepthSafeJSONParser
from batches.api.views import AUTH_ERRORS, BAD_INPUT, error_response

BLANK = {"model": "", "system_instruction": "", "language": "", "concurrency": None,
         "thinking": "", "apply_overrides": False}
BAD_SETTINGS = BAD_INPUT  # messages per field; nothing was saved

def _data(user) -> dict:
    row = preferences.stored(user)
    return {**{name: getattr(row, name) for name in BLANK},
            "updated_at": row.updated_at if row.pk else None}


class UserSettingsView(APIView):
    """Your defaults for new batches: model, system instruction, language, concurrency,
    thinking budget, and whether your system instruction always goes first."""

    serializer_class = s.UserSettingsSerializer
    parser_classes = [DepthSafeJSONParser]

    def handle_exception(self, exc):
        if isinstance(exc, services.ServiceError):
            return error_response(exc)
        return super().handle_exception(exc)

    @extend_schema(summary="Your defaults for new batches",
                   responses={**AUTH_ERRORS, 200: s.UserSettingsSerializer})
    def get(self, request):
        return Response(_data(request.user))

    @extend_schema(summary="Replace your defaults (fields left out go back to the server's)",
                   request=s.UserSettingsSerializer,
                   responses={**AUTH_ERRORS, 200: s.UserSettingsSerializer, 400: BAD_SETTINGS})
    def put(self, request):
        return self._save(request, partial=False)

    @extend_schema(summary="Change some of your defaults",
                   request=s.UserSettingsSerializer,
                   responses={**AUTH_ERRORS, 200: s.UserSettingsSerializer, 400: BAD_SETTINGS})
    def patch(self, request):
        return self._save(request, partial=True)

    def _save(self, request, *, partial: bool) -> Response:
        serializer = s.UserSettingsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if not partial:
            changes = {**BLANK, **changes}
        services.user_settings_update(user=request.user, **changes)
        return Response(_data(request.user), status=http.HTTP_200_OK)
