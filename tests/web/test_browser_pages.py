"""The new-batch page, small screens, keyboards and accessibility in a real browser (Debian's
Chromium through Playwright; axe-core through axe-playwright-python) against a live server, a
real qcluster worker and a FakeGemini."""

import csv

import pytest
from openpyxl import Workbook

from batches.models import Batch
from batches.services import batch_create
from tests.helpers.browser import (  # noqa: F401
    PASSWORD,
    assert_accessible,
    browser_page,
    fake,
    log_in,
    needs_chromium,
    person,
    settled,
    worker,
)
from tests.helpers.workers import qclusters, wait_for_batch  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("needs_chromium")]

PHONE = {"width": 390, "height": 844}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_workbook(path):
    workbook = Workbook()
    notes = workbook.active
    notes.title = "Notes"
    notes.append(["note"])
    notes.append(["ignore me"])
    reviews = workbook.create_sheet("Reviews")
    reviews.append(["product", "review"])
    reviews.append(["Lamp", "Bright and warm"])
    reviews.append(["Kettle", "Leaks at the seam"])
    workbook.save(path)
    return path


def test_the_new_batch_page_keeps_the_file_says_what_blocks_create_and_picks_a_sheet(
    browser_page, live_server, person, tmp_path, settings  # noqa: F811
):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    log_in(page, base, "dana", PASSWORD)
    page.goto(f"{base}/batches/new/")
    assert_accessible(page, "the empty new-batch page")

    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    page.set_input_files("#id_file", str(picture))
    expect(page.locator("#preview-file-error")).to_be_visible()
    page.locator("#id_prompt").press_sequentially("Describe it")
    page.wait_for_timeout(900)
    # Typing re-renders the preview from the staged file: the error stays, nothing says
    # "choose a file", and Create waits for a usable file.
    expect(page.locator("#preview-file-error")).to_be_visible()
    expect(page.locator("#preview-empty")).to_have_count(0)
    expect(page.locator("#create-button")).to_be_disabled()

    book = write_workbook(tmp_path / "book.xlsx")
    page.set_input_files("#id_file", str(book))
    expect(page.locator("#staged-file")).to_contain_text("book.xlsx")
    expect(page.locator("#id_sheet")).to_have_value("Notes")
    expect(page.locator("#preview-no-placeholder")).to_contain_text(
        "every row will get the same prompt")
    settled(page)
    page.select_option("#id_sheet", "Reviews")
    expect(page.locator("#preview-columns")).to_contain_text("review")
    page.fill("#id_prompt", "Rate {{nope}}")
    expect(page.locator("#preview-unknown")).to_contain_text("Error")
    expect(page.locator("#create-button")).to_be_disabled()
    assert_accessible(page, "the new-batch page showing an error")
    page.fill("#id_prompt", "Rate ")
    page.locator("#id_prompt").press("End")
    page.click("[data-insert-column=review]")
    expect(page.locator("#preview-prompts")).to_contain_text("Rate Bright and warm")
    expect(page.locator("#preview-prompts")).to_contain_text("Row 2")
    expect(page.locator("#create-button")).to_be_enabled()

    # A Create the server refuses comes back with the file, its sheet and the preview.
    blocker = batch_create(owner=person, prompt="{{a}}", rows=[{"a": 1}])
    settings.BATCH_MAX_ACTIVE_PER_USER = 1
    page.click("#create-button")
    expect(page.locator(".form-errors")).to_contain_text("active batches")
    expect(page.locator("#staged-file")).to_contain_text("book.xlsx")
    expect(page.locator("#preview-prompts")).to_contain_text("Rate Bright and warm")
    Batch.objects.filter(pk=blocker.pk).update(status="completed")
    page.click("#create-button")
    page.wait_for_url("**/batches/*/")
    batch = Batch.objects.exclude(pk=blocker.pk).get()
    assert batch.columns == ["product", "review"] and batch.total_rows == 2
    assert batch.results.get(index=1).prompt == "Rate Leaks at the seam"


def test_on_a_phone_the_chips_follow_the_prompt_and_results_are_cards(
    browser_page, live_server, person, fake, worker, tmp_path  # noqa: F811
):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    page.set_viewport_size(PHONE)
    log_in(page, base, "dana", PASSWORD)
    page.goto(f"{base}/batches/new/")
    source = write_csv(tmp_path / "cities.csv", ["city", "country", "note"],
                       [["Lyon", "France", "a"], ["poison town", "Nowhere", "b"]])
    page.set_input_files("#id_file", str(source))
    chips = page.locator("#preview-columns")
    expect(chips).to_contain_text("country")
    prompt_box = page.locator("#id_prompt").bounding_box()
    chips_box = chips.bounding_box()
    assert 0 <= chips_box["y"] - (prompt_box["y"] + prompt_box["height"]) < 120
    # Keyboard: from the prompt, Tab reaches the column chips before Create.
    page.focus("#id_prompt")
    page.keyboard.type("Describe ")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.insertColumn") == "city"
    page.keyboard.press("Enter")
    expect(page.locator("#id_prompt")).to_have_value("Describe {{city}}")
    # "Reading…" is hidden or shown at once: a fade-in is half-transparent text, below contrast
    # (axe caught it once mid-fade).
    opacity, fade = page.evaluate(
        "(() => { const s = getComputedStyle(document.querySelector('#preview-loading'));"
        " return [s.opacity, s.transitionDuration]; })()")
    assert (opacity, fade) == ("1", "0s")
    assert_accessible(page, "the new-batch page on a phone")
    page.click("#create-button")
    page.wait_for_url("**/batches/*/")
    expect(page.locator("#batch-progress .badge")).to_have_text("completed with errors",
                                                                  timeout=60_000)
    expect(page.locator("#row-1 .badge")).to_have_text("failed")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways ({width}px)"
    parts = [page.locator(p) for p in ("#row-1 .badge", "#row-1 .error-cell",
                                       "#row-0 .output-cell")]
    parts += page.locator("#row-1 .row-actions button").all()  # Retry and Remove
    for part in parts:
        box = part.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], part
    assert_accessible(page, "the batch page on a phone")

    page.goto(f"{base}/")
    expect(page.locator("#dashboard-rows .badge")).to_be_visible()
    expect(page.locator("#dashboard-rows .tally")).to_have_text("2 of 2 processed")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert_accessible(page, "the dashboard on a phone")


def test_no_page_has_a_serious_accessibility_violation(
    browser_page, live_server, person, fake, worker  # noqa: F811
):
    page, base = browser_page, live_server.url
    page.goto(f"{base}/login/")
    assert_accessible(page, "the login page")
    log_in(page, base, "dana", PASSWORD)
    assert_accessible(page, "the empty dashboard")
    batch = batch_create(owner=person, prompt="Say {{text}}", name="Mixed",
                         rows=[{"text": "fine", "more": "x"}, {"text": "poison", "more": "y"}])
    wait_for_batch(batch.pk, timeout=60)
    page.goto(f"{base}/")
    assert_accessible(page, "the dashboard")
    page.goto(f"{base}/batches/{batch.pk}/")
    assert_accessible(page, "a finished batch page")
    page.click("#column-picker summary")
    assert_accessible(page, "the batch page with its column picker open")
    page.click("#user-menu summary")
    assert_accessible(page, "the user menu")
    page.goto(f"{base}/batches/{batch.pk}/?status=failed")
    assert_accessible(page, "a filtered batch page")
    page.goto(f"{base}/batches/999999/")
    assert_accessible(page, "the not-found page")
    # The skip link is the first stop of the keyboard and leads to the content.
    page.goto(f"{base}/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"
