"""The pages: "Rows from: a spreadsheet | documents", "Add rows" and "Remove" on the batch page."""

from __future__ import annotations

import html as html_lib

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from batches.models import Batch, StagedUpload
from batches.services import batch_cancel, batch_create
from tests.helpers.documents import pdf_bytes, png_bytes, stored_files, upload, uploaded_file

pytestmark = pytest.mark.usefixtures("enqueued")


@pytest.fixture
def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(**extra) -> dict:
    return {"prompt": "Extract the total amount from {{filename}}",
            "model": django_settings.GEMINI_DEFAULT_MODEL, "concurrency": "4",
            "max_retries": "1", "priority": "1", **extra}


def test_the_new_batch_page_offers_spreadsheet_or_documents_with_multiple_files(web):
    html = web.get("/batches/new/").content.decode()
    assert "Rows from" in html
    assert 'name="source" value="documents"' in html
    assert 'name="documents"' in html and "multiple" in html and "data-drop-zone" in html


def test_documents_dropped_on_the_page_become_a_batch(web, media):
    response = web.post("/batches/new/", form(
        source="documents",
        documents=[uploaded_file("menu.pdf", pdf_bytes(2)), uploaded_file("b.png", png_bytes())]))
    batch = Batch.objects.get()
    assert response.status_code == 302 and response.url == f"/batches/{batch.pk}/"
    assert [r.prompt for r in batch.results.order_by("index")] == [
        "Extract the total amount from menu.pdf", "Extract the total amount from b.png"]
    page = web.get(response.url).content.decode()
    assert "menu.pdf" in page and "Add rows" in page


def test_a_bad_document_on_the_page_names_the_file_and_stores_nothing(web, media):
    response = web.post("/batches/new/", form(
        source="documents",
        documents=[uploaded_file("ok.pdf", pdf_bytes()),
                   uploaded_file("scan.jpg", b"this is not a jpeg at all")]))
    assert response.status_code == 200
    assert "scan.jpg is named like a JPEG image but its content is not an image" in \
        response.content.decode()
    assert Batch.objects.count() == 0 and stored_files(media) == []


def test_duplicates_on_the_page_ask_then_follow_the_choice(web, media):
    pdf = pdf_bytes(1, "same")
    docs = lambda: [uploaded_file("a.pdf", pdf), uploaded_file("copy.pdf", pdf)]  # noqa: E731
    asked = web.post("/batches/new/", form(source="documents", documents=docs()))
    assert "copy.pdf (same as a.pdf)" in asked.content.decode()
    kept = web.post("/batches/new/", form(source="documents", documents=docs(),
                                          duplicates="keep"))
    assert kept.status_code == 302 and Batch.objects.get().total_rows == 2


def test_several_spreadsheets_on_the_page_make_one_batch(web):
    response = web.post("/batches/new/", form(
        prompt="Say: {{text}}",
        file=[uploaded_file("a.csv", b"text\none\n"), uploaded_file("b.csv", b"text\ntwo\n")]))
    assert response.status_code == 302
    batch = Batch.objects.get()
    assert [r.input["source_file"] for r in batch.results.order_by("index")] == ["a.csv",
                                                                                "b.csv"]


def test_the_preview_of_documents_shows_their_columns_and_first_prompts(web):
    response = web.post("/batches/new/preview/", {
        "source": "documents", "prompt": "Total of {{filename}}",
        "documents": [uploaded_file("x.pdf", pdf_bytes()), uploaded_file("y.png", png_bytes())]},
        headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "2 documents chosen" in html
    assert "Total of x.pdf" in html and "Total of y.png" in html
    assert 'id="preview-unknown"' not in html
    # Typing in the prompt re-renders from the sample kept in the page, count included.
    sample = html.split('id="preview-sample" value="', 1)[1].split('"', 1)[0]

    again = web.post("/batches/new/preview/", {
        "prompt": "Read {{filename}}", "preview_sample": html_lib.unescape(sample)},
        headers={"HX-Request": "true"}).content.decode()
    assert "2 documents chosen" in again and "Read y.png" in again


def finished_batch(user, **kwargs) -> Batch:
    batch = batch_create(owner=user, **kwargs)
    Batch.objects.filter(pk=batch.pk).update(started_at=timezone.now(), status="running")
    batch.results.update(status="succeeded", output="ok", finished_at=timezone.now())
    batch.finalise_if_done()
    batch.refresh_from_db()
    return batch


def test_add_rows_on_a_finished_batch_page_adds_them_and_runs_it_again(web, user):
    batch = finished_batch(user, prompt="Say: {{text}}", rows=[{"text": "a"}])
    response = web.post(f"/batches/{batch.pk}/rows/add/",
                        {"file": [uploaded_file("more.csv", b"text\nb\nc\n")]}, follow=True)
    assert "Added 2 rows; the batch is running." in response.content.decode()
    batch.refresh_from_db()
    assert batch.status == "running" and batch.total_rows == 3


def test_documents_are_added_on_a_documents_batch_page(web, user, media):
    batch = finished_batch(user, prompt="Total in {{filename}}",
                           documents=[upload("a.pdf", pdf_bytes(1, "a"))])
    page = web.get(f"/batches/{batch.pk}/").content.decode()
    assert 'id="add-rows-documents"' in page and 'id="add-rows-file"' not in page
    response = web.post(f"/batches/{batch.pk}/rows/add/", {
        "documents": [uploaded_file("b.pdf", pdf_bytes(1, "b")),
                      uploaded_file("c.png", png_bytes())]}, follow=True)
    assert "Added 2 rows" in response.content.decode()
    assert [r.input["filename"] for r in batch.results.order_by("index")] == [
        "a.pdf", "b.pdf", "c.png"]


def test_a_cancelled_batch_has_no_add_rows_and_refuses_them(web, user):
    batch = batch_create(owner=user, prompt="Say: {{text}}", rows=[{"text": "a"}])
    batch_cancel(batch=batch)
    assert "Add rows" not in web.get(f"/batches/{batch.pk}/").content.decode()
    response = web.post(f"/batches/{batch.pk}/rows/add/",
                        {"file": [uploaded_file("more.csv", b"text\nb\n")]}, follow=True)
    assert "rows cannot be added" in response.content.decode()
    assert batch.results.count() == 1


def test_a_pending_row_is_removed_from_the_batch_page(web, user):
    batch = batch_create(owner=user, prompt="Say: {{text}}",
                         rows=[{"text": "a"}, {"text": "b"}, {"text": "c"}])
    page = web.get(f"/batches/{batch.pk}/").content.decode()
    assert f"/batches/{batch.pk}/rows/1/delete/" in page
    response = web.post(f"/batches/{batch.pk}/rows/1/delete/", follow=True)
    assert "Removed row 2" in response.content.decode()  # the row number the page showed
    assert [r.prompt for r in batch.results.order_by("index")] == ["Say: a", "Say: c"]


def test_a_succeeded_row_cannot_be_removed_from_the_page(web, user):
    batch = finished_batch(user, prompt="Say: {{text}}", rows=[{"text": "a"}, {"text": "b"}])
    response = web.post(f"/batches/{batch.pk}/rows/0/delete/", follow=True)
    assert "Row 0 is succeeded; only pending or failed rows can be removed." in \
        response.content.decode()
    assert batch.results.count() == 2


# The new-batch page after the merge of staged uploads (one spreadsheet) with several files.

def test_documents_on_the_page_keep_the_output_section_and_the_webhook(web, media):
    response = web.post("/batches/new/", form(
        source="documents", documents=[uploaded_file("menu.pdf", pdf_bytes(2))],
        output_mode="columns", field_name=["total"], field_type=["number"],
        field_values=[""], field_description=[""], field_required=["required"],
        webhook_url="https://example.com/hook"))
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = Batch.objects.get()
    assert [f.name for f in batch.output_fields] == ["total"]
    assert batch.webhook_url == "https://example.com/hook"


def test_several_spreadsheets_are_previewed_together_and_nothing_is_staged(web):
    files = lambda: [uploaded_file("a.csv", b"text\none\n"),  # noqa: E731
                     uploaded_file("b.csv", b"text,extra\ntwo,x\n")]
    html = web.post("/batches/new/preview/", {"prompt": "Say: {{text}}", "file": files()},
                    headers={"HX-Request": "true"}).content.decode()
    assert "2 spreadsheets chosen" in html and "source_file" in html
    assert "Say: one" in html and "Say: two" in html
    assert 'name="staged_upload"' not in html and StagedUpload.objects.count() == 0
    sample = html.split('id="preview-sample" value="', 1)[1].split('"', 1)[0]
    again = web.post("/batches/new/preview/", {
        "prompt": "Read {{text}} from {{source_file}}", "source": "spreadsheet",
        "preview_sample": html_lib.unescape(sample)}, headers={"HX-Request": "true"})
    assert "Read two from b.csv" in again.content.decode()


def test_a_staged_spreadsheet_names_the_documents_uploaded_with_create(web, media):
    csv = b"invoice,customer\nmenu.pdf,Ada\nlogo.png,Bob\n"
    preview = web.post("/batches/new/preview/", {
        "prompt": "Total for {{customer}}: {{file:invoice}}",
        "file": uploaded_file("invoices.csv", csv)}, headers={"HX-Request": "true"})
    staged = StagedUpload.objects.get()
    assert f'value="{staged.token}"' in preview.content.decode()
    response = web.post("/batches/new/", form(
        prompt="Total for {{customer}}: {{file:invoice}}", staged_upload=str(staged.token),
        documents=[uploaded_file("menu.pdf", pdf_bytes(2)), uploaded_file("logo.png",
                                                                          png_bytes())]))
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = Batch.objects.get()
    assert batch.source_filename == "invoices.csv"
    rows = list(batch.results.order_by("index"))
    assert [r.source_line for r in rows] == [2, 3]
    assert all(len(r.document_ids) == 1 for r in rows)
    assert StagedUpload.objects.count() == 0  # used, then discarded
