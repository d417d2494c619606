"""As a new user would: drop 12 PDFs and images on the page, watch each document's row finish,
then add 3 more documents to the finished batch and watch it run again (Chromium, a real
qcluster, a FakeGemini)."""

from __future__ import annotations

import base64

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from batches.fake_gemini import FakeGemini
from batches.models import Batch
from tests.helpers.browser import browser_page, log_in, needs_chromium  # noqa: F401
from tests.helpers.documents import digest, pdf_bytes, png_bytes
from tests.helpers.workers import qclusters  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("needs_chromium")]

PASSWORD = "pw-browser-123"
DROP = """(files) => {
  const dt = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.b64), c => c.charCodeAt(0));
    dt.items.add(new File([bytes], f.name, {type: f.type}));
  }
  return dt;
}"""


@pytest.fixture
def person(transactional_db):
    return get_user_model().objects.create_user("erin", password=PASSWORD)


def drop(page, selector: str, files: list[tuple[str, bytes]]) -> None:
    """Drop files on a drop zone the way a browser does: a drop event with a DataTransfer."""
    payload = [{"name": n, "b64": base64.b64encode(d).decode(),
                "type": "application/pdf" if n.endswith(".pdf") else "image/png"}
               for n, d in files]
    page.dispatch_event(selector, "drop", {"dataTransfer": page.evaluate_handle(DROP, payload)})


def test_drop_documents_watch_them_finish_then_add_three_more(
        browser_page, live_server, person, qclusters, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    first = [(f"menu-{i}.pdf", pdf_bytes(1 + i % 3, f"menu {i}")) for i in range(6)]
    first += [(f"receipt-{i}.png", png_bytes(6, 6, seed=i)) for i in range(6)]
    more = [("late-1.pdf", pdf_bytes(2, "late 1")), ("late-2.png", png_bytes(5, 5, seed=40)),
            ("late-3.pdf", pdf_bytes(1, "late 3"))]
    with FakeGemini(latency_ms=100) as fake:
        qclusters.start(fake.url, MEDIA_ROOT=settings.MEDIA_ROOT)
        log_in(page, base, "erin", PASSWORD)
        page.goto(f"{base}/batches/new/")
        page.check("input[name=source][value=documents]")
        expect(page.locator("#field-file")).to_be_hidden()
        half = len(first) // 2
        # Some chosen with the file picker, the rest dropped: both add up.
        paths = []
        for name, data in first[:half]:
            (tmp_path / name).write_bytes(data)
            paths.append(str(tmp_path / name))
        page.set_input_files("#id_documents", paths)
        drop(page, "#field-documents [data-drop-zone]", first[half:])
        expect(page.locator("#preview-documents")).to_contain_text("12 documents chosen")
        page.fill("#id_prompt", "Extract the total amount from {{filename}}")
        expect(page.locator("#preview-prompts")).to_contain_text(
            "Extract the total amount from menu-0.pdf")
        page.click("text=Create batch")
        page.wait_for_url("**/batches/*/")
        expect(page.locator(".messages")).to_contain_text("with 12 rows")
        expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
        expect(page.locator("#row-0")).to_contain_text(f"sha256:{digest(first[0][1])}")

        batch = Batch.objects.get(owner=person)
        by_name = {r.input["filename"]: r for r in batch.results.all()}
        for name, data in first:
            assert f"sha256:{digest(data)}" in by_name[name].output

        page.click("#add-rows summary")
        drop(page, "#add-rows [data-drop-zone]", more)
        page.click("#add-rows button[type=submit]")
        expect(page.locator(".messages")).to_contain_text("Added 3 rows; the batch is running.")
        expect(page.locator("#batch-progress .badge")).to_have_text("completed", timeout=60_000)
        expect(page.locator("#row-14")).to_contain_text(f"sha256:{digest(more[2][1])}")
        batch.refresh_from_db()
        assert batch.total_rows == 15 and batch.status == "completed"
