"""Property-based API tests: every operation in /api/schema/ answers without 5xx, as documented.

The examples are bounded and derandomized, so a run is deterministic and takes seconds."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.cache import caches
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from batches.models import Batch
from tests.helpers.api import orm_batch

# The schema endpoint needs no database and no login, so it is loaded once at import.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

# DRF's page-number pagination reads an empty `page` as 1 and a bad `page_size` as the default,
# and an empty `status` filter means no filter: accepting those is lenient by design, not a bug.
# (Any other bad `page` is a documented 404, an unknown status a 400.)
LENIENT_PARAMETERS = {"page", "page_size", "status"}
# Creation has rules JSON Schema cannot state: the file's bytes must be a table, the prompt's
# placeholders and the conversation column must name its columns. A well-formed request can
# therefore be refused there with a (documented) 400. Adding rows follows the same rules,
# and the estimate takes the same body as creation.
# A webhook URL likewise must name a public http(s) host, which no JSON Schema can check.
SEMANTIC_OPERATIONS = {("POST", "/api/batches/"), ("POST", "/api/batches/{id}/rows/"),
                       ("POST", "/api/batches/estimate/"),
                       ("POST", "/api/webhooks/"), ("PATCH", "/api/webhooks/{webhook_id}/")}
# So do these: a draft's new prompt must name its columns (and multipart sends null as text),
# a corrected file must be a table, the indexes must be rows of the batch, a comparison needs a
# parent or `with`.
SEMANTIC_OPERATIONS |= {
    ("PATCH", "/api/batches/{id}/"), ("POST", "/api/batches/{id}/versions/"),
    ("POST", "/api/batches/{id}/sample/"), ("POST", "/api/batches/{id}/results/retry/"),
    ("GET", "/api/batches/{id}/compare/"), ("GET", "/api/batches/{id}/compare/export/"),
}
STATUSES = ["succeeded", "failed", "cancelled", "pending", "succeeded", "failed"]


@pytest.fixture
def api_user(user, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 0  # creations must not all end at the active cap
    Token.objects.create(user=user)
    # Requests go through the real WSGI handler, which closes the database connection after
    # each one; the test's transaction must survive them (Django's test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    user.examples = 0
    yield user
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _batch_for(user) -> Batch:
    """The user's running batch with rows in every state, made again if an example deleted it."""
    batch = Batch.objects.filter(owner=user, name="fuzzed").first()
    if batch is None:
        batch = orm_batch(
            user,
            [{"text": f"row {i}", "n": i} for i in range(len(STATUSES))],
            statuses=STATUSES,
            outputs=[f"out {i}" if s == "succeeded" else "" for i, s in enumerate(STATUSES)],
            name="fuzzed", status="running", started_at=timezone.now(),
        )
    return batch


@schema.parametrize()
@settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_answers_as_its_schema_says(case, api_user):
    caches["local"].clear()  # live counts of the batch an example just changed
    batch = _batch_for(api_user)
    api_user.examples += 1
    # Aim three in four well-formed examples at a real batch and row of the user's, so that the
    # 200 bodies are checked too; the generated ids (almost never a batch) cover the 404s.
    path = case.path_parameters or {}
    if case.meta.generation.mode.is_positive and "id" in path and api_user.examples % 4:
        path["id"] = batch.pk
        if "index" in path:
            path["index"] = api_user.examples % len(STATUSES)
    # POST /api/token/ rotates the token, so the header is read afresh for every call.
    token = Token.objects.get(user=api_user).key
    excluded = [negative_data_rejection] if _only_lenient(case) else []
    # Output field names in ?fields= are the batch's own: a well-formed unknown name is a 400.
    by_field = case.path.endswith("/results/") and "fields" in (case.query or {})
    if (case.method, case.path) in SEMANTIC_OPERATIONS or by_field or _listing_rule(case):
        excluded.append(positive_data_acceptance)
    response = case.call_and_validate(headers={"Authorization": f"Token {token}"},
                                      excluded_checks=excluded)
    assert response.status_code < 500


def _listing_rule(case) -> bool:
    """The batch list's rules no schema states: only staff may name an `owner` (the fuzzing
    user is not staff), who must be a user; `page`/`page_size` with `limit`/`offset` is
    ambiguous. Each is a documented 400 naming the parameter."""
    query = case.query or {}
    if (case.method, case.path) != ("GET", "/api/batches/"):
        return False
    return "owner" in query or bool({"limit", "offset"} & set(query)
                                    and {"page", "page_size"} & set(query))


def _only_lenient(case) -> bool:
    """Whether a negative example breaks only parameters the API is lenient about by design."""
    if not case.meta.generation.mode.is_negative:
        return False
    data = case.meta.phase.data
    names = {getattr(data, "parameter", None)}
    names |= {m.parameter for m in getattr(data, "mutations", None) or ()}
    names.discard(None)
    if "status" in names and (case.query or {}).get("status") not in ("", [], [""]):
        return False
    return bool(names) and names <= LENIENT_PARAMETERS
