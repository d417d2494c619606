"""Hostile input and abuse: ownership, CSRF, escaping, formulas, upload limits, throttling,
secrets and the deployment checks. (The malformed-file corpus is in test_ingest.py.)"""

from __future__ import annotations

import csv
import io
import logging
import os
import secrets
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import openpyxl
import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches import services
from batches.exports import FORMULA_TRIGGERS
from batches.models import Batch, BatchResult
from tests.helpers.api import orm_batch

BASE_DIR = Path(__file__).resolve().parent.parent
HX = {"HX-Request": "true"}
XSS = '<script>alert("xss")</script>'
IMG = "<img src=x onerror=alert(1)>"
ESCAPED_XSS = "&lt;script&gt;alert("
MB = 1024 * 1024

# URL keyword arguments that name a batch, and values for the others.
BATCH_KWARGS = {"batch_id", "pk"}
# Notifications' own objects (ownership tested in tests/notifications/).
OTHER_KWARGS = {"index": 0, "webhook_id": 0, "endpoint_id": 0, "delivery_id": 0}
WRITE_METHODS = ["post", "put", "patch", "delete"]


def _kwarg_names(pattern) -> list[str]:
    converters = getattr(pattern, "converters", None)
    if converters:
        return list(converters)
    regex = getattr(pattern, "regex", None)
    return list(regex.groupindex) if regex is not None else []


def _routes() -> list[tuple[str, tuple[str, ...]]]:
    """(namespaced url name, keyword arguments) of every route outside the admin.

    The admin is for staff, who see every batch by design; it is covered separately."""
    found: list[tuple[str, tuple[str, ...]]] = []

    def walk(patterns, namespace: list[str], inherited: list[str]) -> None:
        for p in patterns:
            names = inherited + _kwarg_names(p.pattern)
            if isinstance(p, URLResolver):
                if p.namespace == "admin":
                    continue
                walk(p.url_patterns, namespace + [p.namespace] if p.namespace else namespace,
                     names)
            elif isinstance(p, URLPattern):
                found.append((":".join(namespace + [p.name or f"<unnamed {p.pattern}>"]),
                              tuple(names)))

    walk(get_resolver().url_patterns, [], [])
    return found


ROUTES = _routes()
BATCH_ROUTES = [(name, kwargs) for name, kwargs in ROUTES if BATCH_KWARGS & set(kwargs)]


def _url(name: str, kwargs: tuple[str, ...], batch_id: int) -> str:
    return reverse(name, kwargs={k: batch_id if k in BATCH_KWARGS else OTHER_KWARGS[k]
                                 for k in kwargs})


def _batch(owner, **fields) -> Batch:
    """A running batch with a row in each state, straight through the ORM."""
    statuses = ["succeeded", "failed", "cancelled", "pending"]
    fields.setdefault("status", "running")
    return orm_batch(owner, [{"text": f"t{i}"} for i in range(4)], statuses=statuses,
                     outputs=["out 0", "", "", ""], started_at=timezone.now(), **fields)


def _snapshot(batch: Batch) -> tuple:
    fresh = Batch.objects.filter(pk=batch.pk).values(
        "name", "status", "paused", "cancel_requested", "priority", "concurrency",
        "max_retries").first()
    rows = list(BatchResult.objects.filter(batch_id=batch.pk).order_by("index")
                .values_list("status", "attempts", "output"))
    return fresh, rows


def _token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# Ownership -------------------------------------------------------------------------------------

def test_every_route_argument_is_one_the_security_tests_know():
    # A new route with another argument needs a value in OTHER_KWARGS (or BATCH_KWARGS), or the
    # ownership and CSRF tests below could not reach it.
    unknown = {(name, k) for name, kwargs in ROUTES for k in kwargs
               if k not in BATCH_KWARGS and k not in OTHER_KWARGS}
    assert not unknown
    assert not [name for name, _ in ROUTES if "<unnamed" in name]
    names = {name for name, _ in BATCH_ROUTES}
    assert {"batch_detail", "batch_detail_progress", "batch_delete", "api:batch-detail",
            "api:batch-export", "api:batch-retry-row"} <= names


@pytest.mark.parametrize("name,kwargs", BATCH_ROUTES, ids=[name for name, _ in BATCH_ROUTES])
def test_another_users_batch_is_404_on_every_route_and_method(name, kwargs, user, other_user):
    theirs = _batch(other_user, name="theirs")
    before = _snapshot(theirs)
    url = _url(name, kwargs, theirs.pk)
    session = Client()
    session.force_login(user)
    clients = [session] + ([_token_client(user)] if name.startswith("api:") else [])

    answers = {}
    for client in clients:
        for method in ["get", *WRITE_METHODS]:
            for headers in ({}, HX):
                response = getattr(client, method)(url, headers=headers)
                answers[(type(client).__name__, method, bool(headers))] = response.status_code
        for query in ("?format=xlsx&status=failed", "?format=jsonl", "?page=2"):
            answers[(type(client).__name__, "get", query)] = client.get(url + query).status_code

    # 405 (a method the route does not take) is what a batch that does not exist gets too.
    assert set(answers.values()) <= {404, 405}, answers
    assert 404 in answers.values()
    assert _snapshot(theirs) == before


@pytest.mark.parametrize("name,kwargs", BATCH_ROUTES, ids=[name for name, _ in BATCH_ROUTES])
def test_the_owner_reaches_every_route_that_is_404_for_others(name, kwargs, user):
    # The counterpart of the test above: the 404s there are about ownership, not broken routes.
    mine = _batch(user)
    client = Client()
    client.force_login(user)
    url = _url(name, kwargs, mine.pk)
    codes = {method: getattr(client, method)(url).status_code
             for method in ["get", "post", "delete"]}
    assert set(codes.values()) - {404, 405}, codes
    assert all(code < 500 for code in codes.values()), codes  # reached, not broken


def test_the_admin_is_closed_to_users_who_are_not_staff(client, user, other_user):
    batch = _batch(other_user)
    row = batch.results.first()
    client.force_login(user)
    for url in [reverse("admin:batches_batch_changelist"),
                reverse("admin:batches_batch_change", args=[batch.pk]),
                reverse("admin:batches_batchresult_changelist"),
                reverse("admin:batches_batchresult_change", args=[row.pk])]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_unknown_api_urls_answer_json_404_and_pages_the_sites_own(client, user):
    client.force_login(user)
    for url in ("/api/batches/abc/", "/api/batches/1.5/cancel/", "/api/nothing/"):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}
    page = client.get("/batches/abc/")
    assert page.status_code == 404 and "text/html" in page["Content-Type"]


# CSRF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs", ROUTES, ids=[name for name, _ in ROUTES])
def test_every_state_changing_request_needs_the_csrf_token(name, kwargs, user):
    mine = _batch(user)
    before = _snapshot(mine)
    url = _url(name, kwargs, mine.pk)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    refused = {m: getattr(client, m)(url).status_code for m in WRITE_METHODS}
    assert set(refused.values()) == {403}, refused
    assert _snapshot(mine) == before
    assert Batch.objects.count() == 1

    # With the token the same requests get past the check: the 403s above were about CSRF.
    client.get(reverse("batch_new"))
    token = client.cookies["csrftoken"].value
    allowed = {m: getattr(client, m)(url, headers={"X-CSRFToken": token}).status_code
               for m in WRITE_METHODS}
    assert 403 not in allowed.values(), allowed
    assert all(code < 500 for code in allowed.values()), allowed


def test_the_login_form_needs_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_admin_forms_and_actions_need_the_csrf_token(staff_user, user):
    staff_user.is_superuser = True
    staff_user.save()
    batch = _batch(user, name="kept")
    before = _snapshot(batch)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    change = reverse("admin:batches_batch_change", args=[batch.pk])
    failed_row = batch.results.get(status="failed")
    posts = [
        (change, {"name": "renamed", "priority": "1", "concurrency": "4", "max_retries": "1"}),
        (reverse("admin:batches_batch_changelist"),
         {"action": "delete_selected", "_selected_action": [batch.pk], "post": "yes"}),
        (reverse("admin:batches_batchresult_changelist"),
         {"action": "retry_rows", "_selected_action": [failed_row.pk]}),
        (reverse("admin:batches_batch_delete", args=[batch.pk]), {"post": "yes"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert _snapshot(batch) == before


# Escaping --------------------------------------------------------------------------------------

def test_model_output_and_file_content_are_escaped_on_every_page(client, user, staff_user,
                                                                   make_batch):
    staff_user.is_superuser = True
    staff_user.save()
    batch = make_batch(rows=[{"text": XSS, IMG: "x"}], prompt="Say: {{text}}", name=XSS)
    batch.results.update(status="failed", output=f"{XSS} {IMG}", error=f"{IMG} {XSS}",
                         attempts=1)
    Batch.objects.filter(pk=batch.pk).update(last_error=f"Warning: {XSS}")
    row = batch.results.get()

    client.force_login(user)
    owner_pages = [
        client.get(reverse("dashboard")),
        client.get(reverse("dashboard"), headers=HX),
        client.get(reverse("batch_detail", args=[batch.pk])),
        client.get(reverse("batch_detail", args=[batch.pk]), headers=HX),
        client.get(reverse("batch_detail", args=[batch.pk]) + "?status=failed", headers=HX),
        client.get(reverse("batch_detail_progress", args=[batch.pk]), headers=HX),
        client.post(reverse("batch_new_preview"), {
            "file": _named(f"text,{IMG}\n{XSS},{IMG}\n".encode(), "x.csv"),
            "prompt": "Say: {{text}} {{" + IMG + "}}"}, headers=HX),
    ]
    client.force_login(staff_user)
    admin_pages = [
        client.get(reverse("admin:batches_batch_changelist")),
        client.get(reverse("admin:batches_batch_change", args=[batch.pk])),
        client.get(reverse("admin:batches_batchresult_changelist")
                   + f"?batch__id__exact={batch.pk}"),
        client.get(reverse("admin:batches_batchresult_change", args=[row.pk])),
    ]
    for response in owner_pages + admin_pages:
        assert response.status_code in (200, 286), response.wsgi_request.path
        content = response.content.decode()
        where = response.wsgi_request.get_full_path()
        assert XSS not in content and IMG not in content, where
        assert ESCAPED_XSS in content or "&lt;img src=x" in content, where


def _named(data: bytes, name: str) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


# Formulas in exports ---------------------------------------------------------------------------

def test_exports_neutralise_formulas_in_header_input_and_output(user):
    evil = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://evil","x")']
    rows = [{"=cmd|' /C calc'!A0": value, "text": value} for value in evil]
    batch = orm_batch(user, rows, statuses=["succeeded"] * len(evil), outputs=evil,
                      status="completed", finished_at=timezone.now())
    api = _token_client(user)

    response = api.get(f"/api/batches/{batch.pk}/export/?format=csv")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    cells = [cell for record in csv.reader(io.StringIO(text, newline="")) for cell in record]
    assert "'=cmd|' /C calc'!A0" in cells
    assert cells.count("'=1+1") == 3  # input, its copy, and the output
    assert not [c for c in cells if c.startswith(FORMULA_TRIGGERS)]

    response = api.get(f"/api/batches/{batch.pk}/export/?format=xlsx")
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    values = [c for row in book.active.iter_rows() for c in row]
    assert not [c.coordinate for c in values if c.data_type == "f"]
    # Text cells are string cells holding the text as it was: Excel never evaluates them.
    texts = [c.value for c in values if isinstance(c.value, str)]
    assert texts.count("=1+1") == 3
    assert {c.data_type for c in values if isinstance(c.value, str)} == {"s"}


# Upload size and row limits --------------------------------------------------------------------

class StreamedUpload:
    """A multipart body produced as it is read (never whole in memory), counting bytes read."""

    def __init__(self, *, size: int, boundary: str = "BatchsiteBoundary", fields=None,
                 filename: str = "big.csv"):
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in (fields or {}).items()
        )
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\ntext\n')
        self.head = head.encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.body_size = size
        self.length = len(self.head) + size + len(self.tail)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        start = self.read_bytes
        end = self.length if n is None or n < 0 else min(self.length, start + n)
        self.read_bytes = end
        head = self.head[start:end] if start < len(self.head) else b""
        body_start, body_end = max(start, len(self.head)), min(end, len(self.head)
                                                                 + self.body_size)
        body = b""
        if body_end > body_start:
            line = b"x" * 99 + b"\n"
            offset = (body_start - len(self.head)) % 100
            count = body_end - body_start
            body = (line * (count // 100 + 2))[offset:offset + count]
        tail_start = max(start, len(self.head) + self.body_size)
        tail = b""
        if end > tail_start:
            t0 = tail_start - len(self.head) - self.body_size
            tail = self.tail[t0:end - len(self.head) - self.body_size]
        return head + body + tail

    def readline(self, limit: int = -1) -> bytes:  # the WSGI spec asks for it
        return self.read(limit if limit and limit > 0 else 64 * 1024)

    def environ(self) -> dict:
        return {"wsgi.input": self, "CONTENT_LENGTH": str(self.length),
                "CONTENT_TYPE": self.content_type}


def test_an_api_upload_over_the_limit_is_refused_before_its_body_is_read(user, settings):
    settings.BATCH_MAX_UPLOAD_MB = 1
    upload = StreamedUpload(size=3 * MB, fields={"prompt": "Say: {{text}}"})
    response = _token_client(user).generic("POST", "/api/batches/", **upload.environ())
    assert response.status_code == 400
    assert "1 MB" in str(response.json())
    assert upload.read_bytes == 0
    assert Batch.objects.count() == 0


def test_a_page_upload_over_the_limit_is_refused_without_holding_or_storing_the_file(
        user, settings, monkeypatch):
    from django.core.files import uploadhandler

    from batches import ingest

    def must_not_read(*args, **kwargs):
        raise AssertionError("the oversized file was given to ingest")

    stored = []  # bytes written to the temporary file (memory is bounded by the peak below)
    spool = uploadhandler.TemporaryFileUploadHandler

    def counting(self, raw_data, start, _original=spool.receive_data_chunk):
        stored.append(len(raw_data))
        return _original(self, raw_data, start)

    monkeypatch.setattr(spool, "receive_data_chunk", counting)
    monkeypatch.setattr(ingest, "open_table", must_not_read)
    settings.BATCH_MAX_UPLOAD_MB = 1
    client = Client()
    client.force_login(user)
    size = 4 * MB  # above FILE_UPLOAD_MAX_MEMORY_SIZE, so Django would spool it to a file
    upload = StreamedUpload(size=size, fields={"prompt": "Say: {{text}}", "model":
                                               django_settings.GEMINI_DEFAULT_MODEL,
                                               "concurrency": "4", "max_retries": "1",
                                               "priority": "1"})
    tracemalloc.start()
    try:
        response = client.generic("POST", reverse("batch_new"), **upload.environ())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "The file is 4.0 MB; the limit is 1 MB." in response.content.decode()
    assert peak < size / 2, f"peak {peak / MB:.1f} MB for a {size / MB:.0f} MB upload"
    assert 0 < sum(stored) <= MB
    assert Batch.objects.count() == 0


class Unseekable:
    """A stream that cannot seek and has no size, like a request body or a pipe."""

    def __init__(self, header: bytes, line: bytes, size: int):
        self.header, self.line, self.size = header, line, size
        self.read_bytes = 0

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.read_bytes
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        start = self.read_bytes
        self.read_bytes += n
        if start < len(self.header):
            data = self.header[start:start + n]
            return data + (self.line * (n // len(self.line) + 1))[:n - len(data)]
        offset = (start - len(self.header)) % len(self.line)
        return (self.line * (n // len(self.line) + 2))[offset:offset + n]


def test_batch_create_stops_reading_an_unseekable_stream_at_the_size_limit(user, settings):
    settings.BATCH_MAX_UPLOAD_MB = 1
    stream = Unseekable(b"text\n", b"y" * 999 + b"\n", size=20 * MB)
    with pytest.raises(services.InvalidInput) as err:
        services.batch_create(owner=user, prompt="Say: {{text}}", file=stream,
                              filename="piped.csv")
    assert "1 MB" in str(err.value)
    assert stream.read_bytes < 2 * MB
    assert Batch.objects.count() == 0 and BatchResult.objects.count() == 0


def test_batch_create_stops_reading_an_unseekable_stream_at_the_row_limit(user, settings):
    settings.BATCH_MAX_ROWS = 50
    stream = Unseekable(b"text\n", b"row\n", size=20 * MB)
    with pytest.raises(services.InvalidInput) as err:
        services.batch_create(owner=user, prompt="Say: {{text}}", file=stream,
                              filename="piped.csv")
    assert "50" in str(err.value)
    assert stream.read_bytes < MB
    assert Batch.objects.count() == 0 and BatchResult.objects.count() == 0


def test_the_api_refuses_more_json_rows_than_the_limit(user, settings):
    settings.BATCH_MAX_ROWS = 5
    response = _token_client(user).post(
        "/api/batches/", {"prompt": "{{t}}", "rows": [{"t": i} for i in range(6)]},
        format="json")
    assert response.status_code == 400
    assert "5" in str(response.json()["rows"])
    assert Batch.objects.count() == 0


# Throttling ------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_creation_throttling_holds_under_20_parallel_requests(live_server, settings,
                                                              monkeypatch):
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)
    settings.BATCH_CREATE_RATE = "5/day"
    settings.BATCH_MAX_ACTIVE_PER_USER = 0
    owner = get_user_model().objects.create_user("dave", password="pw-dave-123")
    token = Token.objects.create(user=owner).key
    start = threading.Barrier(20)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        start.wait()
        response = requests.post(
            f"{live_server.url}/api/batches/", timeout=60,
            json={"prompt": "Say {{text}}", "rows": [{"text": f"request {i}"}]},
            headers={"Authorization": f"Token {token}"})
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)

    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 5 + [429] * 15
    for response in answers:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) > 0
    assert Batch.objects.filter(owner=owner).count() == 5


# Secrets ---------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_secret_key_and_api_key_never_appear_in_logs_pages_or_api_answers(
        settings, caplog, monkeypatch, user):
    from batches.fake_gemini import FakeGemini
    from tests.helpers.engine import run_until_done

    secret_key = "sk-" + secrets.token_hex(24)
    api_key = "gk-" + secrets.token_hex(16)
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)
    settings.DEBUG = False
    settings.SECRET_KEY = secret_key
    settings.GEMINI_API_KEY = api_key
    settings.BATCH_RETRY_BASE_S = 0.01
    settings.BATCH_RETRY_MAX_S = 0.02
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    bodies: list[str] = []

    def keep(response) -> None:
        content = b"".join(response.streaming_content) if response.streaming else \
            response.content
        bodies.append(content.decode("utf-8", "replace"))
        bodies.append(str(response.headers))

    api = _token_client(user)
    page = Client(raise_request_exception=False)
    keep(page.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"}))

    with FakeGemini() as fake:
        settings.GEMINI_BASE_URL = fake.url
        fake.configure(fail_permanently=["row 1"], fail_times={"row 2": 1})
        created = api.post("/api/batches/", {
            "prompt": "Say: {{text}}", "rows": [{"text": f"row {i}"} for i in range(4)],
            "max_retries": 2}, format="json")
        keep(created)
        first = Batch.objects.get(pk=created.json()["id"])
        run_until_done(first)

        fake.configure(require_key="a-different-key")  # the provider refuses our key
        refused = services.batch_create(owner=user, prompt="Say: {{text}}",
                                        rows=[{"text": "refused"}])
        run_until_done(refused)

    settings.GEMINI_BASE_URL = "http://127.0.0.1:9"  # nothing listens: connection errors
    unreachable = services.batch_create(owner=user, prompt="Say: {{text}}",
                                        rows=[{"text": "unreachable"}], max_retries=1)
    from batches import engine

    engine.run_slice(unreachable.pk, budget_s=1)
    settings.GEMINI_BASE_URL = "htp://not a url"
    broken = services.batch_create(owner=user, prompt="Say: {{text}}",
                                   rows=[{"text": "broken"}])
    engine.run_slice(broken.pk, budget_s=1)

    for batch in (first, refused, unreachable, broken):
        for path in ("", "results/", "export/?format=csv", "export/?format=jsonl"):
            keep(api.get(f"/api/batches/{batch.pk}/{path}"))
        keep(page.get(reverse("batch_detail", args=[batch.pk])))
        keep(page.get(reverse("batch_detail_progress", args=[batch.pk]), headers=HX))
    for url in (reverse("dashboard"), reverse("batch_new"), "/api/batches/", "/api/token/",
                "/api/schema/", "/api/docs/", "/no-such-page/", "/api/no-such-endpoint/"):
        keep(page.get(url))

    def boom(*args, **kwargs):
        raise RuntimeError("an unexpected failure")

    monkeypatch.setattr("batches.services.batch_pause", boom)
    monkeypatch.setattr("batches.api.views.live_figures", boom)
    error_page = page.post(reverse("batch_pause", args=[first.pk]))
    api_error = APIClient(raise_request_exception=False)
    api_error.credentials(HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"])
    api_answer = api_error.get(f"/api/batches/{first.pk}/")
    assert error_page.status_code == api_answer.status_code == 500
    keep(error_page)
    keep(api_answer)

    # The run really went through provider, connection and configuration errors and two 500s,
    # and the libraries' own DEBUG logging was captured: there was something to leak.
    errors = " ".join(BatchResult.objects.values_list("error", flat=True))
    errors += " ".join(Batch.objects.values_list("last_error", flat=True))
    for expected in ("Gemini API error 400", "API key not valid", "connection failed",
                     "GEMINI_BASE_URL is not usable"):
        assert expected in errors
    assert "RuntimeError" in caplog.text
    assert {"httpx2", "httpcore2.http11", "google_genai.models"} <= {
        r.name for r in caplog.records}
    for secret in (secret_key, api_key):
        assert secret not in caplog.text
        assert not [b for b in bodies if secret in b]
        assert not [r for r in caplog.records if secret in repr(r.__dict__)]
        stored = list(Batch.objects.values_list("last_error", flat=True)) + list(
            BatchResult.objects.values_list("error", flat=True))
        assert not [s for s in stored if secret in s]


# Deployment ------------------------------------------------------------------------------------

def test_the_deploy_checks_pass_with_production_settings():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(DEBUG="false", SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="example.com")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
