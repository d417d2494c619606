import csv
import io
import json
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import openpyxl
import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services
from batches.models import Batch, BatchResult, Priority
from tests.conftest import csv_file, grant_high_priority
from tests.helpers.api import client_for, orm_batch

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1", "-2", "@x", "\tcmd", "\rcmd"]

# Every endpoint that names a batch: (method, path template, body).
BATCH_ENDPOINTS = [
    ("get", "/api/batches/{id}/", None),
    ("patch", "/api/batches/{id}/", {"name": "mine now"}),
    ("delete", "/api/batches/{id}/", None),
    ("get", "/api/batches/{id}/results/", None),
    ("post", "/api/batches/{id}/cancel/", None),
    ("post", "/api/batches/{id}/pause/", None),
    ("post", "/api/batches/{id}/resume/", None),
    ("post", "/api/batches/{id}/retry-failed/", None),
    ("post", "/api/batches/{id}/results/1/retry/", None),
    ("get", "/api/batches/{id}/export/?format=csv", None),
    ("get", "/api/batches/{id}/export/?format=jsonl", None),
    ("get", "/api/batches/{id}/export/?format=xlsx", None),
    ("post", "/api/batches/{id}/start/", None),
    ("post", "/api/batches/{id}/sample/", {"size": 2}),
    ("post", "/api/batches/{id}/versions/", {"name": "v2"}),
    ("get", "/api/batches/{id}/compare/?with={id}", None),
    ("get", "/api/batches/{id}/compare/export/?with={id}", None),
    ("post", "/api/batches/{id}/results/retry/", {"indexes": [0]}),
    ("post", "/api/batches/{id}/rows/", {"rows": [{"text": "more"}]}),
    ("delete", "/api/batches/{id}/results/1/", None),
]
ALL_ENDPOINTS = BATCH_ENDPOINTS + [
    ("get", "/api/batches/", None),
    ("post", "/api/batches/", {"prompt": "{{text}}", "rows": [{"text": "a"}]}),
    ("get", "/api/token/", None),
    ("post", "/api/token/", None),
    ("get", "/api/me/settings/", None),
    ("patch", "/api/me/settings/", {"language": "fr"}),
]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Autouse fixtures run before `user`: creating users is then cheap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api(user):
    return client_for(user)


def call(client, method, path, body=None):
    return getattr(client, method)(path, body, format="json") if body else \
        getattr(client, method)(path)


def running_batch(owner, n=4, **fields):
    """Rows 0..3: succeeded, failed, running, pending."""
    statuses = (["succeeded", "failed", "running", "pending"] * n)[:n]
    fields.setdefault("status", "running")
    fields.setdefault("started_at", timezone.now())
    return orm_batch(owner, [{"text": f"t{i}"} for i in range(n)], statuses=statuses,
                     outputs=[f"out {i}" if s == "succeeded" else "" for i, s in
                              enumerate(statuses)], **fields)


def finished_batch(owner, statuses=("succeeded", "succeeded"), status="completed"):
    batch = orm_batch(owner, [{"text": f"t{i}"} for i in range(len(statuses))],
                      statuses=list(statuses), status=status, started_at=timezone.now(),
                      finished_at=timezone.now())
    batch.refresh_counts()
    return batch


# --- authentication and ownership -------------------------------------------------------------

@pytest.mark.parametrize("method,path,body", ALL_ENDPOINTS)
def test_it_answers_401_without_credentials(method, path, body, user):
    batch = running_batch(user)
    response = call(APIClient(), method, path.format(id=batch.pk), body)
    assert response.status_code == 401
    assert Batch.objects.filter(pk=batch.pk, status="running").exists()


def test_it_answers_401_for_a_wrong_token(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/batches/").status_code == 401


@pytest.mark.parametrize("method,path,body", BATCH_ENDPOINTS)
def test_it_answers_404_for_another_users_batch_on_every_endpoint(method, path, body, api,
                                                                    other_user):
    theirs = running_batch(other_user, name="theirs")
    before = list(theirs.results.order_by("index").values_list("status", flat=True))
    response = call(api, method, path.format(id=theirs.pk), body)
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "theirs" and theirs.status == "running"
    assert list(theirs.results.order_by("index").values_list("status", flat=True)) == before


@pytest.mark.parametrize("method,path,body", BATCH_ENDPOINTS)
def test_it_answers_404_for_a_batch_that_does_not_exist(method, path, body, api):
    assert call(api, method, path.format(id=999999), body).status_code == 404


def test_it_never_lists_another_users_batches(api, user, other_user):
    mine = running_batch(user)
    running_batch(other_user)
    response = api.get("/api/batches/")
    assert response.status_code == 200
    assert [b["id"] for b in response.json()["results"]] == [mine.pk]
    assert response.json()["count"] == 1


def test_staff_see_and_act_on_every_batch(user, other_user, staff_user):
    a, b = running_batch(user), running_batch(other_user)
    staff = client_for(staff_user)
    listed = staff.get("/api/batches/").json()
    assert {r["id"] for r in listed["results"]} == {a.pk, b.pk}
    assert {r["owner"] for r in listed["results"]} == {"alice", "bob"}
    assert staff.get(f"/api/batches/{b.pk}/").status_code == 200
    assert staff.post(f"/api/batches/{b.pk}/pause/").status_code == 200


def test_session_writes_need_the_csrf_token(user):
    batch = running_batch(user)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(f"/api/batches/{batch.pk}/").status_code == 200
    body = {"prompt": "{{text}}", "rows": [{"text": "a"}]}
    assert client.post("/api/batches/", body, format="json").status_code == 403
    assert client.patch(f"/api/batches/{batch.pk}/", {"name": "x"},
                        format="json").status_code == 403
    assert client.post(f"/api/batches/{batch.pk}/pause/").status_code == 403
    assert client.delete(f"/api/batches/{batch.pk}/").status_code == 403
    assert client.post("/api/token/").status_code == 403
    assert Batch.objects.count() == 1

    client.get("/admin/login/")  # any page that sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post("/api/batches/", body, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201


def test_token_auth_needs_no_csrf_token(user):
    client = client_for(user)
    client.handler.enforce_csrf_checks = True
    response = client.post("/api/batches/", {"prompt": "{{text}}", "rows": [{"text": "a"}]},
                           format="json")
    assert response.status_code == 201


def test_a_signed_in_user_can_see_and_rotate_their_token(user):
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/token/").json() == {"token": None}
    first = client.post("/api/token/")
    assert first.status_code == 201
    key = first.json()["token"]
    assert client.get("/api/token/").json() == {"token": key}
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert token_client.get("/api/batches/").status_code == 200

    second = client.post("/api/token/").json()["token"]
    assert second != key
    assert token_client.get("/api/batches/").status_code == 401


def test_no_response_reveals_the_secret_key_or_the_gemini_key(api, user, settings):
    settings.GEMINI_API_KEY = "gemini-key-that-must-not-leak"
    batch = finished_batch(user, ("succeeded", "failed"), "completed_with_errors")
    responses = [call(api, method, path.format(id=batch.pk), body)
                 for method, path, body in ALL_ENDPOINTS if method == "get"]
    bodies = [body_of(r) if r.streaming else r.content for r in responses]
    bodies += [APIClient().get(p).content for p in ("/api/schema/", "/api/docs/")]
    bodies.append(api.post("/api/batches/", {"prompt": "{{x}}", "rows": [{"y": 1}]},
                           format="json").content)
    for content in bodies:
        assert settings.SECRET_KEY.encode() not in content
        assert b"gemini-key-that-must-not-leak" not in content


# --- create ------------------------------------------------------------------------------------

def test_it_creates_a_batch_from_json_rows_and_starts_it_on_commit(
        api, user, django_capture_on_commit_callbacks):
    grant_high_priority(user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/batches/", {
            "prompt": "Say {{text}}", "rows": [{"text": "a"}, {"text": "b"}], "name": "Two",
            "priority": "high", "concurrency": 4, "max_retries": 1, "temperature": 0.5,
        }, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["total_rows"] == 2 and body["columns"] == ["text"]
    assert body["name"] == "Two" and body["priority"] == "high"
    assert body["counts"]["pending"] == 2
    assert response["Location"] == f"/api/batches/{body['id']}/"
    batch = Batch.objects.get(pk=body["id"])
    assert batch.owner == user and batch.priority == Priority.HIGH
    assert (batch.concurrency, batch.max_retries, batch.temperature) == (4, 1, 0.5)
    assert list(batch.results.order_by("index").values_list("prompt", flat=True)) == [
        "Say a", "Say b"]
    assert len(callbacks) == 1


def test_it_creates_a_batch_from_a_csv_upload(api):
    response = api.post("/api/batches/", {
        "file": csv_file("name,text\nAnn,hi\nBob,yo\n", "people.csv"),
        "prompt": "{{name}}: {{text}}", "temperature": "", "max_output_tokens": "",
    }, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["columns"] == ["name", "text"] and body["total_rows"] == 2
    assert body["name"] == "people" and body["source_filename"] == "people.csv"
    assert body["temperature"] is None


def test_it_reads_the_named_sheet_of_an_xlsx_upload(api):
    book = openpyxl.Workbook()
    book.active.title = "First"
    book.active.append(["other"])
    book.active.append(["x"])
    second = book.create_sheet("Data")
    second.append(["text"])
    for value in ("a", "b", "c"):
        second.append([value])
    upload = io.BytesIO()
    book.save(upload)
    upload.seek(0)
    upload.name = "book.xlsx"
    response = api.post("/api/batches/", {"file": upload, "prompt": "{{text}}", "sheet": "Data"},
                        format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["total_rows"] == 3
    assert response.json()["columns"] == ["text"]


def test_a_malformed_file_answers_400_with_its_line_and_creates_nothing(api):
    text = "text,n\n" + "".join(f"row {i},{i}\n" for i in range(5)) + "bad,1,extra\n"
    response = api.post("/api/batches/", {"file": csv_file(text), "prompt": "{{text}}"},
                        format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert body["line"] == 7
    assert body["file"] and isinstance(body["file"][0], str)
    assert Batch.objects.count() == 0 and BatchResult.objects.count() == 0


def test_an_unknown_placeholder_answers_400_and_creates_nothing(api):
    response = api.post("/api/batches/", {"file": csv_file("text\na\n"), "prompt": "{{txt}}"},
                        format="multipart")
    assert response.status_code == 400
    assert "{{txt}} is not a column" in response.json()["prompt"][0]
    response = api.post("/api/batches/", {"rows": [{"text": "a"}], "prompt": "{{txt}}"},
                        format="json")
    assert response.status_code == 400 and "prompt" in response.json()
    assert Batch.objects.count() == 0 and BatchResult.objects.count() == 0


def test_an_upload_over_the_size_limit_answers_400_naming_the_limit(api, settings):
    settings.BATCH_MAX_UPLOAD_MB = 1
    big = csv_file("text\n" + "x" * 1_100_000 + "\n")
    response = api.post("/api/batches/", {"file": big, "prompt": "{{text}}"}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"file": ["The file is larger than the 1 MB limit."]}
    assert Batch.objects.count() == 0


def test_a_body_over_the_size_limit_is_refused_before_it_is_parsed(api, settings):
    settings.BATCH_MAX_UPLOAD_MB = 1
    huge = csv_file("text\n" + "x" * 2_200_000 + "\n")
    response = api.post("/api/batches/", {"file": huge, "prompt": "{{text}}"},
                        format="multipart")
    assert response.status_code == 400
    assert "1 MB limit" in response.json()["file"][0]
    response = api.post("/api/batches/", {"prompt": "{{text}}",
                                          "rows": [{"text": "x" * 2_200_000}]}, format="json")
    assert response.status_code == 400 and "1 MB limit" in response.json()["rows"][0]
    assert Batch.objects.count() == 0


@pytest.mark.parametrize("change,field", [
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 100_000}, "concurrency"),
    ({"max_retries": -1}, "max_retries"),
    ({"temperature": 3}, "temperature"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"priority": "urgent"}, "priority"),
    ({"model": "gpt-4"}, "model"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "{{}}"}, "prompt"),
    ({"rows": []}, "rows"),
    ({"rows": ["a", "b"]}, "rows"),
    ({"rows": {"text": "a"}}, "rows"),
    ({"conversation_column": "nope"}, "conversation_column"),
])
def test_bad_settings_answer_400_with_the_field(api, change, field):
    body = {"prompt": "{{text}}", "rows": [{"text": "a"}], **change}
    response = api.post("/api/batches/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Batch.objects.count() == 0


def test_a_file_and_no_prompt_answers_400(api):
    response = api.post("/api/batches/", {"file": csv_file("text\na\n")}, format="multipart")
    assert response.status_code == 400 and "prompt" in response.json()
    response = api.post("/api/batches/", {"prompt": "{{text}}"}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()


def test_the_number_of_active_batches_is_capped(api, user, other_user, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 1
    body = {"prompt": "{{text}}", "rows": [{"text": "a"}]}
    assert api.post("/api/batches/", body, format="json").status_code == 201
    response = api.post("/api/batches/", body, format="json")
    assert response.status_code == 429
    assert "limit is 1" in response.json()["detail"]
    assert Batch.objects.filter(owner=user).count() == 1
    assert client_for(other_user).post("/api/batches/", body, format="json").status_code == 201


def test_creation_is_throttled_per_user_with_retry_after(api, other_user, settings):
    settings.BATCH_CREATE_RATE = "2/hour"
    body = {"prompt": "{{text}}", "rows": [{"text": "a"}]}
    assert [api.post("/api/batches/", body, format="json").status_code for _ in range(2)] == [
        201, 201]
    response = api.post("/api/batches/", body, format="json")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 3600
    assert Batch.objects.count() == 2
    assert api.get("/api/batches/").status_code == 200  # only creation is throttled
    assert client_for(other_user).post("/api/batches/", body, format="json").status_code == 201


# --- read --------------------------------------------------------------------------------------

def test_the_batch_shows_live_figures(api, user, monkeypatch):
    # The rate is rows finished over time elapsed: the clock stands still for the test.
    frozen = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    started = frozen - timezone.timedelta(seconds=30)
    waiting = frozen
    batch = running_batch(user, n=8, started_at=started, api_waiting_since=waiting,
                          prompt_tokens=30, output_tokens=50, last_error="Slow API")
    body = api.get(f"/api/batches/{batch.pk}/").json()
    assert body["counts"] == {"pending": 2, "running": 2, "succeeded": 2, "failed": 2,
                              "cancelled": 0}
    assert body["progress"] == 50.0
    # The rate counts every row that ran (2 succeeded + 2 failed in 30 s).
    assert body["rows_per_minute"] == 8.0 and body["processed"] == 4
    assert body["eta_seconds"] == 30
    assert (body["prompt_tokens"], body["output_tokens"]) == (30, 50)
    assert body["waiting_on_api_since"] is not None
    assert body["last_error"] == "Slow API" and body["warnings"] == []
    assert body["status"] == "running" and body["total_rows"] == 8


def test_a_finished_batch_shows_its_stored_counts_without_counting_rows(api, user):
    batch = finished_batch(user, ("succeeded", "failed"), "completed_with_errors")
    with CaptureQueriesContext(connection) as queries:
        body = api.get(f"/api/batches/{batch.pk}/").json()
    assert body["counts"]["succeeded"] == 1 and body["counts"]["failed"] == 1
    assert body["progress"] == 100.0 and body["eta_seconds"] == 0
    assert not any("batches_batchresult" in q["sql"] for q in queries.captured_queries)


def test_the_batch_detail_costs_a_fixed_number_of_queries(api, user,
                                                          django_assert_max_num_queries):
    batch = running_batch(user, n=200)
    with django_assert_max_num_queries(5):
        assert api.get(f"/api/batches/{batch.pk}/").status_code == 200


def test_polls_of_a_running_batch_read_the_counters_not_the_rows(api, user):
    batch = running_batch(user, n=8)
    assert api.get(f"/api/batches/{batch.pk}/").json()["counts"]["pending"] == 2
    batch.results.filter(status="pending").update(status="succeeded")
    with CaptureQueriesContext(connection) as queries:
        body = api.get(f"/api/batches/{batch.pk}/").json()
    counts = [q["sql"] for q in queries.captured_queries if "GROUP BY" in q["sql"]]
    assert counts and all("batches_batchresult" not in sql for sql in counts)
    assert body["counts"]["pending"] == 0 and body["counts"]["succeeded"] == 4


def test_an_action_answers_with_fresh_counts(api, user):
    batch = running_batch(user, n=4)
    assert api.get(f"/api/batches/{batch.pk}/").json()["counts"]["cancelled"] == 0
    body = api.post(f"/api/batches/{batch.pk}/cancel/").json()
    assert body["counts"]["cancelled"] == 1 and body["counts"]["pending"] == 0


def test_the_list_is_newest_first_filterable_and_paginated(api, user):
    old = finished_batch(user)
    new = running_batch(user)
    Batch.objects.filter(pk=old.pk).update(created_at=timezone.now() - timezone.timedelta(1))
    body = api.get("/api/batches/").json()
    assert [b["id"] for b in body["results"]] == [new.pk, old.pk]
    assert body["results"][0]["counts"]["running"] == 1
    assert body["results"][0]["progress"] == 50.0
    assert body["results"][1]["counts"]["succeeded"] == 2
    only = api.get("/api/batches/?status=completed").json()
    assert [b["id"] for b in only["results"]] == [old.pk]
    both = api.get("/api/batches/?status=completed,running").json()
    assert both["count"] == 2
    paged = api.get("/api/batches/?page_size=1&page=2").json()
    assert [b["id"] for b in paged["results"]] == [old.pk] and paged["count"] == 2
    assert api.get("/api/batches/?status=bogus").status_code == 400


def test_the_list_costs_a_fixed_number_of_queries(api, user, django_assert_max_num_queries):
    for _ in range(6):
        running_batch(user)
        finished_batch(user)
    with django_assert_max_num_queries(5):
        assert len(api.get("/api/batches/").json()["results"]) == 12


def test_results_come_in_index_order_with_their_fields(api, user):
    batch = running_batch(user, n=4)
    body = api.get(f"/api/batches/{batch.pk}/results/").json()
    assert body["count"] == 4
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    first = body["results"][0]
    assert first["input"] == {"text": "t0"} and first["output"] == "out 0"
    assert first["status"] == "succeeded" and first["attempts"] == 1
    assert (first["prompt_tokens"], first["output_tokens"], first["latency_ms"]) == (3, 5, 12)
    assert body["results"][1]["error"] == "boom"


def test_results_are_paginated_by_index_without_counting_the_batch(api, user):
    batch = running_batch(user, n=5)
    with CaptureQueriesContext(connection) as queries:
        body = api.get(f"/api/batches/{batch.pk}/results/?page_size=2&page=3").json()
    assert body["count"] == 5 and body["next"] is None and body["previous"]
    assert [r["index"] for r in body["results"]] == [4]
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert api.get(f"/api/batches/{batch.pk}/results/?page=9").status_code == 404


def test_results_filter_by_status(api, user):
    batch = running_batch(user, n=8)
    body = api.get(f"/api/batches/{batch.pk}/results/?status=failed&page_size=1").json()
    assert body["count"] == 2 and [r["index"] for r in body["results"]] == [1]
    body = api.get(f"/api/batches/{batch.pk}/results/?status=failed&page_size=1&page=2").json()
    assert [r["index"] for r in body["results"]] == [5]
    assert api.get(f"/api/batches/{batch.pk}/results/?status=nope").status_code == 400


# --- actions -----------------------------------------------------------------------------------

def test_pause_resume_and_cancel(api, user, django_capture_on_commit_callbacks):
    batch = running_batch(user)
    body = api.post(f"/api/batches/{batch.pk}/pause/").json()
    assert body["status"] == "paused" and body["paused"] is True
    with django_capture_on_commit_callbacks() as callbacks:
        body = api.post(f"/api/batches/{batch.pk}/resume/").json()
    assert body["status"] == "running" and len(callbacks) == 1
    body = api.post(f"/api/batches/{batch.pk}/cancel/").json()
    assert body["cancel_requested"] is True
    assert body["counts"]["pending"] == 0 and body["counts"]["cancelled"] == 1


def test_retry_failed_sends_failed_rows_back(api, user):
    batch = finished_batch(user, ("succeeded", "failed", "failed"), "completed_with_errors")
    response = api.post(f"/api/batches/{batch.pk}/retry-failed/")
    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert response.json()["counts"]["pending"] == 2


def test_retry_one_row(api, user):
    batch = finished_batch(user, ("succeeded", "failed"), "completed_with_errors")
    response = api.post(f"/api/batches/{batch.pk}/results/1/retry/")
    assert response.status_code == 200
    assert response.json()["status"] == "pending" and response.json()["index"] == 1
    assert api.post(f"/api/batches/{batch.pk}/results/7/retry/").status_code == 404


@pytest.mark.parametrize("statuses,status,path,reason", [
    (("succeeded",), "completed", "resume/", "completed"),
    (("succeeded",), "completed", "cancel/", "already completed"),
    (("cancelled",), "cancelled", "cancel/", "already cancelled"),
    (("succeeded",), "completed", "pause/", "pending or running"),
    (("succeeded",), "completed", "retry-failed/", "no failed rows"),
    (("succeeded", "failed"), "completed_with_errors", "results/0/retry/", "succeeded"),
])
def test_an_action_that_does_not_apply_answers_409(api, user, statuses, status, path, reason):
    batch = finished_batch(user, statuses, status)
    response = api.post(f"/api/batches/{batch.pk}/{path}")
    assert response.status_code == 409
    assert reason in response.json()["detail"]
    batch.refresh_from_db()
    assert batch.status == status


def test_patch_changes_name_priority_concurrency_and_retries(api, user):
    batch = running_batch(user)
    response = api.patch(f"/api/batches/{batch.pk}/", {
        "name": "Renamed", "priority": "low", "concurrency": 3, "max_retries": 7}, format="json")
    assert response.status_code == 200
    assert response.json()["priority"] == "low" and response.json()["name"] == "Renamed"
    batch.refresh_from_db()
    assert (batch.name, batch.priority, batch.concurrency, batch.max_retries) == (
        "Renamed", Priority.LOW, 3, 7)


@pytest.mark.parametrize("body,field", [
    ({"priority": "urgent"}, "priority"),
    ({"concurrency": 0}, "concurrency"),
    ({"max_retries": 99}, "max_retries"),
    ({"name": "x" * 201}, "name"),
])
def test_patch_rejects_bad_values(api, user, body, field):
    batch = running_batch(user)
    response = api.patch(f"/api/batches/{batch.pk}/", body, format="json")
    assert response.status_code == 400 and field in response.json()


def test_put_is_not_allowed(api, user):
    batch = running_batch(user)
    assert api.put(f"/api/batches/{batch.pk}/", {"name": "x"}, format="json").status_code == 405


def test_delete_stops_and_removes_the_batch_with_its_rows(api, user):
    batch = running_batch(user)
    assert api.delete(f"/api/batches/{batch.pk}/").status_code == 204
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert not BatchResult.objects.filter(batch_id=batch.pk).exists()


# --- export ------------------------------------------------------------------------------------

def formula_batch(user):
    rows = [{"text": f} for f in FORMULAS]
    return orm_batch(user, rows, statuses=["succeeded"] * len(rows), outputs=FORMULAS,
                     status="completed", name="Report: Q1/Q2")


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def test_export_csv_neutralises_formulas_and_is_an_attachment(api, user):
    batch = formula_batch(user)
    response = api.get(f"/api/batches/{batch.pk}/export/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="batch-{batch.pk}-report-q1q2.csv"')
    rows = list(csv.DictReader(io.StringIO(body_of(response).decode("utf-8-sig"), newline="")))
    assert [r["output"] for r in rows] == ["'" + f for f in FORMULAS]
    assert [r["text"] for r in rows] == ["'" + f for f in FORMULAS]


def test_export_xlsx_writes_formulas_as_plain_text(api, user):
    batch = formula_batch(user)
    response = api.get(f"/api/batches/{batch.pk}/export/?format=xlsx")
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(body_of(response))).active
    cells = [c for row in sheet.iter_rows(min_row=2) for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    outputs = [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
    # String cells with the text as it was; a carriage return is stored as OOXML's _x000D_.
    assert outputs[:-1] == FORMULAS[:-1] and outputs[-1] == "_x000D_cmd"


def test_export_jsonl_keeps_model_output_verbatim(api, user):
    batch = formula_batch(user)
    response = api.get(f"/api/batches/{batch.pk}/export/?format=jsonl")
    assert response["Content-Type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in body_of(response).decode().splitlines()]
    assert [r["output"] for r in records] == FORMULAS


def test_export_defaults_to_csv_and_ignores_the_accept_header(api, user):
    batch = formula_batch(user)
    response = api.get(f"/api/batches/{batch.pk}/export/", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")


def test_export_of_an_unknown_format_answers_400(api, user):
    batch = formula_batch(user)
    response = api.get(f"/api/batches/{batch.pk}/export/?format=pdf")
    assert response.status_code == 400 and "format" in response.json()


def test_export_while_running_has_every_row_with_its_status(api, user):
    batch = running_batch(user, n=4)
    response = api.get(f"/api/batches/{batch.pk}/export/?format=jsonl")
    records = [json.loads(line) for line in body_of(response).decode().splitlines()]
    assert [(r["status"], r["output"]) for r in records] == [
        ("succeeded", "out 0"), ("failed", ""), ("running", ""), ("pending", "")]
    done = api.get(f"/api/batches/{batch.pk}/export/?format=jsonl&status=succeeded,failed")
    assert len(body_of(done).decode().splitlines()) == 2


# --- schema and docs ---------------------------------------------------------------------------

EXPECTED_PATHS = {
    "/api/batches/", "/api/batches/{id}/", "/api/batches/{id}/results/",
    "/api/batches/{id}/cancel/", "/api/batches/{id}/pause/", "/api/batches/{id}/resume/",
    "/api/batches/{id}/retry-failed/", "/api/batches/{id}/results/{index}/retry/",
    "/api/batches/{id}/export/", "/api/token/", "/api/me/settings/", "/api/batches/estimate/",
    "/api/batches/{id}/start/", "/api/batches/{id}/sample/", "/api/batches/{id}/versions/",
    "/api/batches/{id}/compare/", "/api/batches/{id}/compare/export/",
    "/api/batches/{id}/results/retry/",
    "/api/batches/{id}/rows/", "/api/batches/{id}/results/{index}/",
    "/api/webhooks/", "/api/webhooks/{webhook_id}/", "/api/webhooks/{webhook_id}/rotate-secret/",
    "/api/webhooks/{webhook_id}/test/", "/api/webhooks/{webhook_id}/deliveries/",
    "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver/",
}


def test_the_schema_validates_and_lists_every_path():
    with tempfile.NamedTemporaryFile(suffix=".yaml") as out:
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", out.name)
        schema = yaml.safe_load(open(out.name))
    assert set(schema["paths"]) == EXPECTED_PATHS
    create = schema["paths"]["/api/batches/"]["post"]
    assert set(create["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"201", "400", "429"} <= set(create["responses"])
    export = schema["paths"]["/api/batches/{id}/export/"]["get"]
    assert {p["name"] for p in export["parameters"]} >= {"format", "status"}
    assert set(export["responses"]["200"]["content"]) == {
        "text/csv", "application/x-ndjson",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    for path in ("cancel", "pause", "resume", "retry-failed"):
        assert "409" in schema["paths"][f"/api/batches/{{id}}/{path}/"]["post"]["responses"]


def test_the_schema_and_docs_are_served_without_a_cdn(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar" in html
    assert "cdn." not in html and "unpkg" not in html


@pytest.mark.django_db(transaction=True)
def test_the_creation_rate_lets_exactly_the_rate_through_parallel_requests(settings):
    # In the database cache (the default without Redis) incr is a read and a write; the
    # numbered slots still let exactly the rate through.
    assert "DatabaseCache" in settings.CACHES["default"]["BACKEND"]
    settings.BATCH_CREATE_RATE = "5/hour"
    barrier = threading.Barrier(20)

    def attempt(_):
        barrier.wait()
        try:
            return services._take_creation_slot(42)[0]
        finally:
            connection.close()

    with ThreadPoolExecutor(20) as pool:
        allowed = list(pool.map(attempt, range(20)))
    assert allowed.count(True) == 5


def test_high_priority_without_the_permission_is_forbidden(api, user):
    body = {"prompt": "{{text}}", "rows": [{"text": "a"}], "priority": "high"}
    response = api.post("/api/batches/", body, format="json")
    assert response.status_code == 403
    assert "use high priority" in response.json()["detail"]
    assert not Batch.objects.exists()


def test_concurrency_above_the_users_cap_is_forbidden(api, user, settings):
    body = {"prompt": "{{text}}", "rows": [{"text": "a"}], "concurrency": 101}
    response = api.post("/api/batches/", body, format="json")
    assert response.status_code == 403
    assert "Concurrency above 100 is for staff" in response.json()["detail"]


def test_deeply_nested_json_is_a_400_not_a_500(api):
    body = '{"prompt": "{{a}}", "rows": [' + "[" * 100_000 + "]" * 100_000 + "]}"
    response = api.post("/api/batches/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_a_row_index_too_long_for_a_number_is_a_404(api, user):
    batch = orm_batch(user, [{"text": "a"}], statuses=["failed"])
    response = api.post(f"/api/batches/{batch.pk}/results/{'9' * 5000}/retry/")
    assert response.status_code == 404


def test_max_output_tokens_beyond_32_bits_is_a_field_error(api):
    body = {"prompt": "{{a}}", "rows": [{"a": 1}], "max_output_tokens": 2**31}
    response = api.post("/api/batches/", body, format="json")
    assert response.status_code == 400
    assert "max_output_tokens" in response.json()


def test_results_carry_the_rows_line_in_the_uploaded_file(api, user):
    from batches.services import batch_create

    source = io.BytesIO(b"text\nfirst\n\nsecond\n")
    batch = batch_create(owner=user, prompt="{{text}}", file=source, filename="lines.csv")
    body = api.get(f"/api/batches/{batch.pk}/results/").json()
    assert [(r["index"], r["row"]) for r in body["results"]] == [(0, 2), (1, 4)]


def test_an_upload_spooled_to_disk_creates_its_batch(api, settings, monkeypatch):
    # Above FILE_UPLOAD_MAX_MEMORY_SIZE Django keeps an upload in a temporary file, which
    # cannot be deep-copied: the form body must still be read (it answered 500 before).
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100
    rows = "".join(f"{i},review number {i}\n" for i in range(200))
    response = api.post("/api/batches/", {
        "file": csv_file("id,text\n" + rows), "prompt": "Classify: {{text}}", "budget": ""},
        format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["total_rows"] == 200
