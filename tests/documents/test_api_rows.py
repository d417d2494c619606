"""The API for documents, several spreadsheets, adding rows and removing rows."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.utils import timezone

from batches.models import Batch, BatchResult
from tests.helpers.api import client_for, orm_batch
from tests.helpers.documents import pdf_bytes, png_bytes, stored_files, uploaded_file

pytestmark = pytest.mark.usefixtures("enqueued")


@pytest.fixture(autouse=True)
def clear_cache(db):
    # The shared cache is the database cache without REDIS_URL: clearing it needs the database.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api(user):
    return client_for(user)


def batch_in(user, status: str, statuses=("succeeded", "succeeded"), **fields) -> Batch:
    rows = [{"text": f"row {i}"} for i in range(len(statuses))]
    extra = {"started_at": timezone.now()} if status != "pending" else {}
    if status in Batch.FINAL_STATUSES:
        extra["finished_at"] = timezone.now()
    return orm_batch(user, rows, statuses=list(statuses), status=status,
                     prompt_template="Say: {{text}}", **extra, **fields)


def test_documents_posted_to_the_api_become_rows(api, media):
    pdf, png = pdf_bytes(2, "a"), png_bytes()
    response = api.post("/api/batches/", {
        "prompt": "Extract the total amount from {{filename}}",
        "documents": [uploaded_file("a.pdf", pdf), uploaded_file("b.png", png)],
    }, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["columns"] == ["filename", "size", "sha256", "mime_type", "pages"]
    batch = Batch.objects.get()
    assert [r.input["filename"] for r in batch.results.order_by("index")] == ["a.pdf", "b.png"]


def test_duplicates_are_refused_unless_the_api_says_keep_or_skip(api, media):
    pdf = pdf_bytes(1, "same")
    body = {"prompt": "Read {{filename}}",
            "documents": [uploaded_file("a.pdf", pdf), uploaded_file("b.pdf", pdf)]}
    refused = api.post("/api/batches/", body, format="multipart")
    assert refused.status_code == 400
    assert "b.pdf (same as a.pdf)" in refused.json()["documents"][0]
    assert Batch.objects.count() == 0 and stored_files(media) == []
    body["documents"] = [uploaded_file("a.pdf", pdf), uploaded_file("b.pdf", pdf)]
    skipped = api.post("/api/batches/", {**body, "duplicates": "skip"}, format="multipart")
    assert skipped.status_code == 201 and skipped.json()["total_rows"] == 1


def test_a_bad_document_is_a_400_naming_it_and_nothing_is_stored(api, media):
    response = api.post("/api/batches/", {
        "prompt": "Read {{filename}}",
        "documents": [uploaded_file("ok.pdf", pdf_bytes()),
                      uploaded_file("tool.pdf", b"MZ\x90\x00" + b"\x00" * 64)],
    }, format="multipart")
    assert response.status_code == 400
    assert "tool.pdf" in response.json()["documents"][0]
    assert Batch.objects.count() == 0 and stored_files(media) == []


def test_several_spreadsheets_posted_at_once_make_one_batch(api):
    response = api.post("/api/batches/", {
        "prompt": "Say: {{text}}",
        "file": [uploaded_file("a.csv", b"text\none\n"), uploaded_file("b.csv", b"text\ntwo\n")],
    }, format="multipart")
    assert response.status_code == 201, response.json()
    batch = Batch.objects.get()
    assert [(r.input["source_file"], r.input["text"]) for r in batch.results.order_by("index")] \
        == [("a.csv", "one"), ("b.csv", "two")]


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
def test_json_rows_added_to_a_batch_take_the_next_indexes(
        api, user, enqueued, status, django_capture_on_commit_callbacks):
    batch = batch_in(user, status, statuses=("pending",) * 2 if status == "pending"
                     else ("succeeded", "succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/batches/{batch.pk}/rows/",
                            {"rows": [{"text": "new 1"}, {"text": "new 2"}]}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["rows_added"] == 2
    assert response.json()["batch"]["total_rows"] == 4
    new = batch.results.filter(index__gte=2).order_by("index")
    assert [(r.index, r.prompt, r.status) for r in new] == [
        (2, "Say: new 1", "pending"), (3, "Say: new 2", "pending")]
    batch.refresh_from_db()
    assert batch.status == ("pending" if status == "pending" else "running")
    assert batch.finished_at is None
    assert enqueued == [batch.pk]


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
def test_a_spreadsheet_file_can_be_added_to_a_batch(api, user, status):
    batch = batch_in(user, status)
    response = api.post(f"/api/batches/{batch.pk}/rows/",
                        {"file": uploaded_file("more.csv", b"text\nthree\nfour\n")},
                        format="multipart")
    assert response.status_code == 201, response.json()
    assert list(batch.results.order_by("index").values_list("prompt", flat=True))[2:] == [
        "Say: three", "Say: four"]
    assert response.json()["batch"]["status"] == ("pending" if status == "pending"
                                                  else "running")


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
def test_documents_can_be_added_to_a_documents_batch(api, user, media, status):
    created = api.post("/api/batches/", {
        "prompt": "Total in {{filename}}", "documents": [uploaded_file("a.pdf", pdf_bytes())],
    }, format="multipart").json()
    if status != "pending":
        Batch.objects.filter(pk=created["id"]).update(status=status, started_at=timezone.now())
        if status == "completed":
            Batch.objects.filter(pk=created["id"]).update(finished_at=timezone.now())
            BatchResult.objects.filter(batch_id=created["id"]).update(status="succeeded")
    response = api.post(f"/api/batches/{created['id']}/rows/", {
        "documents": [uploaded_file("b.png", png_bytes()), uploaded_file("a-again.pdf",
                                                                         pdf_bytes())],
        "duplicates": "skip"}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["rows_added"] == 1
    batch = Batch.objects.get(pk=created["id"])
    assert batch.documents.count() == 2 and len(stored_files(media)) == 2
    assert batch.status == ("pending" if status == "pending" else "running")
    assert batch.finished_at is None


def test_added_rows_are_validated_like_a_creation_and_nothing_is_added_on_error(api, user):
    batch = batch_in(user, "completed")
    response = api.post(f"/api/batches/{batch.pk}/rows/",
                        {"file": uploaded_file("more.csv", b"words\nthree\n")},
                        format="multipart")
    assert response.status_code == 400
    assert "{{text}} is not a column" in response.json()["prompt"][0]
    batch.refresh_from_db()
    assert batch.results.count() == 2 and batch.status == "completed"


def test_the_row_cap_applies_to_the_batchs_total(api, user, settings):
    settings.BATCH_MAX_ROWS = 3
    batch = batch_in(user, "running")
    response = api.post(f"/api/batches/{batch.pk}/rows/",
                        {"rows": [{"text": "a"}, {"text": "b"}]}, format="json")
    assert response.status_code == 400
    assert "limit of 3 rows" in str(response.json())
    assert batch.results.count() == 2


def test_adding_rows_to_a_cancelled_batch_is_a_409(api, user):
    batch = batch_in(user, "cancelled", statuses=("succeeded", "cancelled"))
    response = api.post(f"/api/batches/{batch.pk}/rows/", {"rows": [{"text": "x"}]},
                        format="json")
    assert response.status_code == 409
    assert "cancelled" in response.json()["detail"]
    assert batch.results.count() == 2


def test_adding_rows_to_another_users_batch_is_a_404(api, other_user):
    batch = batch_in(other_user, "running")
    response = api.post(f"/api/batches/{batch.pk}/rows/", {"rows": [{"text": "x"}]},
                        format="json")
    assert response.status_code == 404


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_a_pending_or_failed_row_can_be_removed(api, user, status):
    batch = batch_in(user, "running", statuses=("succeeded", status, "pending"))
    response = api.delete(f"/api/batches/{batch.pk}/results/1/")
    assert response.status_code == 204
    # The rows after it move up, so indexes (and pages) have no gap.
    assert list(batch.results.order_by("index").values_list("index", "input")) == [
        (0, {"text": "row 0"}), (1, {"text": "row 2"})]
    batch.refresh_from_db()
    assert batch.total_rows == 2
    page = api.get(f"/api/batches/{batch.pk}/results/").json()
    assert page["count"] == 2 and [r["index"] for r in page["results"]] == [0, 1]


@pytest.mark.parametrize("status", ["running", "succeeded"])
def test_a_running_or_succeeded_row_cannot_be_removed(api, user, status):
    batch = batch_in(user, "running", statuses=("pending", status))
    response = api.delete(f"/api/batches/{batch.pk}/results/1/")
    assert response.status_code == 409
    assert f"Row 1 is {status}" in response.json()["detail"]
    assert batch.results.count() == 2


def test_removing_the_last_open_row_finishes_the_batch(api, user):
    batch = batch_in(user, "running", statuses=("succeeded", "pending"))
    assert api.delete(f"/api/batches/{batch.pk}/results/1/").status_code == 204
    batch.refresh_from_db()
    assert batch.status == "completed" and batch.total_rows == 1
    assert batch.succeeded_count == 1


def test_removing_the_failed_row_of_a_finished_batch_clears_its_errors(api, user):
    batch = batch_in(user, "completed_with_errors", statuses=("succeeded", "failed"))
    assert api.delete(f"/api/batches/{batch.pk}/results/1/").status_code == 204
    batch.refresh_from_db()
    assert batch.status == "completed" and batch.failed_count == 0


def test_removing_a_row_that_does_not_exist_is_a_404(api, user):
    batch = batch_in(user, "running")
    assert api.delete(f"/api/batches/{batch.pk}/results/99/").status_code == 404


def test_removing_a_documents_row_removes_its_file(api, user, media,
                                                   django_capture_on_commit_callbacks):
    created = api.post("/api/batches/", {
        "prompt": "Total in {{filename}}",
        "documents": [uploaded_file("a.pdf", pdf_bytes(1, "a")),
                      uploaded_file("b.pdf", pdf_bytes(1, "b"))],
    }, format="multipart").json()
    assert len(stored_files(media)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/batches/{created['id']}/results/0/")
    assert response.status_code == 204
    assert len(stored_files(media)) == 1
    assert BatchResult.objects.get(batch_id=created["id"]).input["filename"] == "b.pdf"


def test_a_document_over_the_upload_limit_is_refused_by_size_not_as_empty(api, media, settings):
    settings.BATCH_MAX_UPLOAD_MB = 1  # the upload handler keeps nothing past this
    response = api.post("/api/batches/", {
        "prompt": "Read {{filename}}",
        "documents": [uploaded_file("huge.txt", b"x" * (3 * 1024 * 1024 // 2))],
    }, format="multipart")
    assert response.status_code == 400
    assert "huge.txt is 1.5 MB" in response.json()["documents"][0]
    assert stored_files(media) == []
