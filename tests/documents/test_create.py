"""Creating batches from documents, several spreadsheets and {{file:column}} references, and
every kind of bad input refused with nothing created and nothing left in storage."""

from __future__ import annotations

import pytest

from batches.models import Batch, BatchDocument
from batches.services import InvalidInput, batch_create
from tests.conftest import csv_file
from tests.helpers.documents import (
    encrypted_pdf_bytes,
    pdf_bytes,
    png_bytes,
    stored_files,
    upload,
    zip_bytes,
)

pytestmark = pytest.mark.usefixtures("enqueued")


def create(user, docs, prompt="Extract the total amount from {{filename}}", **kwargs):
    return batch_create(owner=user, prompt=prompt, documents=docs, **kwargs)


def test_each_document_becomes_a_row_with_its_name_size_hash_type_and_pages(user, media):
    pdf, png = pdf_bytes(3, "a"), png_bytes(seed=1)
    batch = create(user, [upload("menu.pdf", pdf), upload("photo.png", png)])
    rows = list(batch.results.order_by("index"))
    assert [r.input["filename"] for r in rows] == ["menu.pdf", "photo.png"]
    assert rows[0].input["pages"] == 3 and rows[0].input["mime_type"] == "application/pdf"
    assert rows[1].input["pages"] is None and rows[1].input["mime_type"] == "image/png"
    assert rows[0].input["size"] == len(pdf)
    assert rows[0].prompt == "Extract the total amount from menu.pdf"
    docs = {d.pk: d for d in batch.documents.all()}
    assert [docs[r.document_ids[0]].sha256 for r in rows] == [r.input["sha256"] for r in rows]
    assert len(stored_files(media)) == 2


def test_a_zip_of_documents_unpacks_into_rows(user, media):
    archive = zip_bytes({"menus/a.pdf": pdf_bytes(1, "a"), "menus/b.png": png_bytes(seed=2),
                         "__MACOSX/._a.pdf": b"junk", "menus/": b""})
    batch = create(user, [upload("menus.zip", archive)])
    assert [r.input["filename"] for r in batch.results.order_by("index")] == [
        "menus/a.pdf", "menus/b.png"]


def test_text_markdown_html_and_csv_are_accepted_as_text(user, media):
    batch = create(user, [upload("a.txt", b"hello"), upload("b.md", b"# Title"),
                          upload("c.html", b"<!doctype html><p>x"), upload("d.csv", b"a,b\n1,2")])
    assert [r.input["mime_type"] for r in batch.results.order_by("index")] == [
        "text/plain", "text/md", "text/html", "text/csv"]


def test_duplicate_files_are_reported_and_the_user_chooses_keep_or_skip(user, media):
    pdf = pdf_bytes(1, "same")
    docs = [upload("a.pdf", pdf), upload("copy.pdf", pdf), upload("b.png", png_bytes())]
    with pytest.raises(InvalidInput, match=r"copy\.pdf \(same as a\.pdf\).*keep or skip"):
        create(user, docs)
    assert Batch.objects.count() == 0 and stored_files(media) == []
    kept = create(user, [upload(n, f.getvalue()) for n, f in docs], duplicates="keep")
    assert kept.results.count() == 3 and kept.documents.count() == 2
    skipped = create(user, [upload(n, f.getvalue()) for n, f in docs], duplicates="skip")
    assert [r.input["filename"] for r in skipped.results.order_by("index")] == ["a.pdf",
                                                                                "b.png"]


BAD_INPUTS = [
    ("encrypted.pdf", encrypted_pdf_bytes(), r"encrypted\.pdf is an encrypted"),
    ("corrupt.pdf", b"%PDF-1.7\nnot really a pdf", r"corrupt\.pdf is a damaged PDF"),
    ("empty.pdf", None, r"empty\.pdf is a PDF with 0 pages"),
    ("fake.png", b"just some text, not an image", r"fake\.png is named like a PNG image but "
                                                    r"its content is not an image"),
    ("zero.pdf", b"", r"zero\.pdf is empty \(0 bytes\)"),
    ("setup.pdf", b"MZ\x90\x00\x03" + b"\x00" * 100, r"setup\.pdf is named like a PDF but .*"
                                                       r"a Windows program|setup\.pdf is a "
                                                       r"Windows program"),
    ("evil.zip", zip_bytes({"../outside.pdf": pdf_bytes()}), r"outside the archive"),
    ("nested.zip", zip_bytes({"inner.zip": zip_bytes({"a.pdf": pdf_bytes()})}), r"nested"),
    ("many.zip", zip_bytes({f"{i}.txt": f"file {i}".encode() for i in range(4)}),
     r"holds 4 files; a batch holds at most 3"),
]


@pytest.mark.parametrize("name,data,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_files_are_refused_naming_the_file_and_leave_nothing_behind(
        user, media, settings, name, data, message):
    settings.BATCH_MAX_FILES = 3
    if data is None:
        data = pdf_bytes(0)
    good = [upload("first.pdf", pdf_bytes(1, "good")), upload("second.png", png_bytes())]
    with pytest.raises(InvalidInput, match=message) as info:
        create(user, good + [upload(name, data)])
    assert info.value.field == "documents"
    assert Batch.objects.count() == 0 and BatchDocument.objects.count() == 0
    assert stored_files(media) == []


def test_too_many_files_and_too_large_files_are_refused(user, media, settings):
    settings.BATCH_MAX_FILES = 2
    docs = [upload(f"{i}.txt", f"text {i}".encode()) for i in range(3)]
    with pytest.raises(InvalidInput, match=r"2\.txt is file number 3; a batch holds at most 2"):
        create(user, docs)
    settings.BATCH_MAX_FILES = 50
    settings.BATCH_MAX_FILE_MB = 1
    with pytest.raises(InvalidInput, match=r"big\.txt is 1\.5 MB; the limit is 1 MB per file"):
        create(user, [upload("ok.txt", b"fine"), upload("big.txt", b"x" * (3 * 1024 * 512))])
    assert stored_files(media) == []


def test_a_prompt_error_after_the_files_were_stored_leaves_nothing_behind(user, media):
    with pytest.raises(InvalidInput, match=r"\{\{total\}\} is not a column"):
        create(user, [upload("a.pdf", pdf_bytes())], prompt="Read {{total}}")
    assert stored_files(media) == []


def test_spreadsheet_rows_refer_to_their_documents_with_file_column(user, media):
    sheet = csv_file("customer,invoice\nAnn,inv-1.pdf\nBob,scans/inv-2.png\n")
    pdf, png = pdf_bytes(2, "inv-1"), png_bytes(seed=9)
    batch = batch_create(owner=user, prompt="Total for {{customer}} in {{file:invoice}}",
                         file=sheet, filename="rows.csv",
                         documents=[upload("inv-1.pdf", pdf),
                                    upload("scans.zip", zip_bytes({"scans/inv-2.png": png}))])
    rows = list(batch.results.order_by("index"))
    assert rows[0].prompt == "Total for Ann in inv-1.pdf"
    docs = {d.pk: d.name for d in batch.documents.all()}
    assert [docs[r.document_ids[0]] for r in rows] == ["inv-1.pdf", "scans/inv-2.png"]


def test_rows_naming_files_not_uploaded_are_refused_listing_the_names(user, media):
    sheet = csv_file("invoice\na.pdf\nmissing-1.pdf\nmissing-2.pdf\n")
    with pytest.raises(InvalidInput, match=r"not uploaded: missing-1\.pdf, missing-2\.pdf"):
        batch_create(owner=user, prompt="Read {{file:invoice}}", file=sheet,
                     filename="rows.csv", documents=[upload("a.pdf", pdf_bytes())])
    assert Batch.objects.count() == 0 and stored_files(media) == []


def test_several_spreadsheets_make_one_batch_with_a_source_file_column(user):
    first = csv_file("text,extra\none,x\ntwo,y\n", "jan.csv")
    second = csv_file("text\nthree\n", "feb.csv")
    batch = batch_create(owner=user, prompt="Say: {{text}}",
                         files=[("jan.csv", first), ("feb.csv", second)])
    rows = [r.input for r in batch.results.order_by("index")]
    assert [(r["source_file"], r["text"]) for r in rows] == [
        ("jan.csv", "one"), ("jan.csv", "two"), ("feb.csv", "three")]
    assert batch.columns == ["source_file", "text", "extra"]


def test_several_spreadsheets_must_each_have_the_prompts_columns(user):
    first = csv_file("text\none\n", "jan.csv")
    second = csv_file("words\nthree\n", "feb.csv")
    with pytest.raises(InvalidInput, match=r"feb\.csv has no column 'text'"):
        batch_create(owner=user, prompt="Say: {{text}}",
                     files=[("jan.csv", first), ("feb.csv", second)])
    assert Batch.objects.count() == 0


def test_deleting_a_batch_deletes_its_files(user, media, django_capture_on_commit_callbacks):
    from batches.services import batch_delete

    batch = create(user, [upload("a.pdf", pdf_bytes()), upload("b.png", png_bytes())])
    other = create(user, [upload("c.pdf", pdf_bytes(1, "c"))])
    assert len(stored_files(media)) == 3
    with django_capture_on_commit_callbacks(execute=True):
        batch_delete(batch=batch)
    assert len(stored_files(media)) == 1
    assert other.documents.get().path in stored_files(media)


def test_the_file_limits_cover_the_whole_batch_when_documents_are_added(user, media, settings):
    from batches.batch_rows import batch_add_rows

    settings.BATCH_MAX_FILES = 3
    settings.BATCH_MAX_FILES_TOTAL_MB = 1
    batch = create(user, [upload("a.txt", b"a" * 600_000), upload("b.txt", b"b")])
    with pytest.raises(InvalidInput, match=r"c\.txt is file number 4; a batch holds at most 3"):
        batch_add_rows(batch=batch, documents=[upload("x.txt", b"x"), upload("c.txt", b"c")])
    with pytest.raises(InvalidInput, match=r"add up to more than 1 MB \(the limit\) at d\.txt"):
        batch_add_rows(batch=batch, documents=[upload("d.txt", b"d" * 600_000)])
    assert batch.results.count() == 2 and len(stored_files(media)) == 2
