"""The batch page and the figures every surface shows: the progress poll carries the filter
counts and the rows that changed, a cancelled batch says what ran, rows read like the file."""

import io
import re
from datetime import timedelta

from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from batches import services
from batches.cli import figures
from batches.models import Batch

HX = {"HTTP_HX_REQUEST": "true"}


def url(name, *args):
    return reverse(name, args=args)


def poll(client, batch, **params):
    return client.get(url("batch_detail_progress", batch.pk), params, **HX)


def set_rows(batch, indexes, status, **fields):
    batch.results.filter(index__in=indexes).update(status=status, finished_at=timezone.now(),
                                                   **fields)


def cancelled_batch(make_batch, ran=3, total=10):
    batch = make_batch(rows=[{"text": f"row {i}"} for i in range(total)])
    Batch.objects.filter(pk=batch.pk).update(status="running",
                                             started_at=timezone.now() - timedelta(minutes=1))
    set_rows(batch, range(ran), "succeeded", output="ok")
    services.batch_cancel(batch=batch)
    batch.refresh_from_db()
    return batch


# 1. One poll, one truth ----------------------------------------------------------------------

def test_the_progress_poll_carries_the_filter_counts_and_the_rows_that_changed(
        client, user, make_batch):
    client.force_login(user)
    batch = make_batch(rows=[{"text": f"row {i}"} for i in range(4)])
    set_rows(batch, [0], "succeeded", output="answer zero")
    set_rows(batch, [1], "running")
    body = poll(client, batch, seen="0:pending,1:pending,2:pending", view_status="all").content
    body = body.decode()
    chips = body.split('id="result-filters"', 1)[1].split("</nav>", 1)[0]
    assert 'hx-swap-oob="true"' in chips
    assert re.search(r'data-filter="succeeded"[^>]*>succeeded <span class="count">1<', chips)
    assert re.search(r'data-filter="pending"[^>]*>pending <span class="count">2<', chips)
    # Rows 0 and 1 moved on and are sent, wrapped for an out-of-band swap; row 2 did not.
    assert re.search(r'<template><tr id="row-0"[^>]*hx-swap-oob="true"', body)
    assert "answer zero" in body
    assert 'id="row-1"' in body and 'id="row-2"' not in body and 'id="row-3"' not in body


def test_a_plain_progress_poll_sends_no_rows(client, user, make_batch):
    client.force_login(user)
    batch = make_batch()
    body = poll(client, batch).content.decode()
    assert 'id="batch-progress"' in body and "result-filters" not in body


def test_the_results_table_polls_nothing_itself_and_the_progress_card_stops_when_done(
        client, user, make_batch):
    client.force_login(user)
    batch = make_batch()
    set_rows(batch, [0, 1, 2], "succeeded", output="ok")
    batch.finalise_if_done()
    response = poll(client, batch, seen="0:running")
    assert response.status_code == 286
    assert 'hx-trigger="every 2s"' not in response.content.decode()
    page = client.get(url("batch_detail", batch.pk)).content.decode()
    results = page.split('id="batch-results"', 1)[1].split(">", 1)[0]
    assert "hx-trigger" not in results


def test_the_last_progress_poll_of_a_columns_batch_brings_its_field_summaries(
        client, user, make_batch):
    # A page opened before any row finished shows empty summaries; the final poll fills them.
    client.force_login(user)
    batch = make_batch(rows=[{"text": f"row {i}"} for i in range(3)],
                       output_fields=[{"name": "score", "type": "integer"}])
    for i, score in enumerate((1, 5, 9)):
        set_rows(batch, [i], "succeeded", output=f'{{"score": {score}}}', data={"score": score})
    batch.refresh_counts()
    batch.finalise_if_done()
    body = poll(client, batch, seen="0:pending").content.decode()
    slot = body.split('id="field-summaries"', 1)[1]
    assert 'hx-swap-oob="true"' in slot.split(">", 1)[0]
    assert 'id="summary-score"' in slot and "median <strong>5</strong>" in slot


# 2. and 3. A cancelled batch says what ran and can run the rest -----------------------------

def test_a_cancelled_batch_says_how_many_rows_ran_and_how_many_were_cancelled(
        client, user, make_batch):
    client.force_login(user)
    batch = cancelled_batch(make_batch)
    assert batch.status == "cancelled"
    page = client.get(url("batch_detail", batch.pk)).content.decode()
    assert "3 of 10 processed · 7 cancelled" in page
    assert re.search(r'id="progress-percent">30%<', page)
    assert 'id="progress-percent">100%' not in page and "10 of 10 rows done" not in page
    progress = batch.progress()
    # The rate counts the 3 rows that ran, not the 7 cancelled ones.
    assert progress.rows_per_minute <= 3.1


def test_the_dashboard_api_cli_and_admin_give_the_same_figures(client, user, make_batch):
    batch = cancelled_batch(make_batch)
    client.force_login(user)
    dashboard = client.get(url("dashboard")).content.decode()
    assert "30% · <span class=\"tally\">3 of 10 processed · 7 cancelled</span>" in dashboard
    api = client.get(f"/api/batches/{batch.pk}/").json()
    assert api["processed"] == 3 and api["progress"] == 30.0
    listed = client.get("/api/batches/").json()["results"][0]
    assert listed["processed"] == 3 and listed["progress"] == 30.0
    assert "Progress:  30.0%: 3 of 10 processed · 7 cancelled" in figures(batch)
    user.is_staff = user.is_superuser = True
    user.save()
    admin_list = client.get("/admin/batches/batch/").content.decode()
    assert "30.0%" in admin_list and "3 of 10 processed · 7 cancelled" in admin_list


def test_retrying_one_row_of_a_cancelled_batch_keeps_it_cancelled_with_its_way_out(
        client, user, make_batch):
    client.force_login(user)
    batch = cancelled_batch(make_batch, ran=3)
    set_rows(batch, [0], "failed", error="boom")
    services.batch_retry_row(batch=batch, index=0)
    set_rows(batch, [0], "succeeded", output="ok", error="")
    batch.finalise_if_done()
    batch.refresh_from_db()
    assert batch.status == "cancelled"
    page = client.get(url("batch_detail", batch.pk)).content.decode()
    assert "Run the 7 cancelled rows" in page
    response = client.post(url("batch_resume", batch.pk))
    assert response.status_code == 302
    assert batch.results.filter(status="pending").count() == 7
    batch.refresh_from_db()
    assert batch.status in ("pending", "running")


def test_a_finished_batch_with_cancelled_rows_can_run_them(client, user, make_batch):
    client.force_login(user)
    batch = make_batch()
    set_rows(batch, [0, 1], "succeeded", output="ok")
    set_rows(batch, [2], "cancelled")
    # Written by an older rule: finished "with errors" while a row sat cancelled.
    Batch.objects.filter(pk=batch.pk).update(status="completed_with_errors",
                                             finished_at=timezone.now())
    page = client.get(url("batch_detail", batch.pk)).content.decode()
    assert "Run the 1 cancelled row<" in page
    client.post(url("batch_resume", batch.pk))
    assert batch.results.get(index=2).status == "pending"


# 6. and 7. Results that look like the data ----------------------------------------------------

def test_the_results_show_input_columns_as_columns_and_the_row_numbers_of_the_file(
        client, user):
    client.force_login(user)
    source = io.BytesIO(b"product,rating,review,extra\nShoe,5,Great,x\n\nBag,2,Torn,y\n")
    batch = services.batch_create(owner=user, prompt="{{review}}", file=source,
                                  filename="r.csv")
    page = client.get(url("batch_detail", batch.pk)).content.decode()
    head = page.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert [h for h in re.findall(r'class="input-head">([^<]+)<', head)] == [
        "product", "rating", "review"]
    assert 'class="answer-head">Answer<' in head
    row = page.split('id="row-1"', 1)[1].split("</tr>", 1)[0]
    # Line 3 of the file is blank, so the second row is line 4.
    assert re.search(r'class="num muted row-number"[^>]*>4<', row)
    assert ">Bag<" in row and ">Torn<" in row and "product: " not in row
    picked = client.get(url("batch_detail", batch.pk), {"columns": ["extra", "product"]},
                        **HX).content.decode()
    head = picked.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert re.findall(r'class="input-head">([^<]+)<', head) == ["product", "extra"]
    # The choice is remembered for this batch, also by the progress poll's rows.
    again = client.get(url("batch_detail", batch.pk)).content.decode()
    assert re.findall(r'class="input-head">([^<]+)<', again) == ["product", "extra"]
    set_rows(batch, [0], "succeeded", output="fine")
    body = poll(client, batch, seen="0:pending").content.decode()
    assert ">Shoe<" in body and ">x<" in body and ">5<" not in body


def test_retrying_a_row_in_place_returns_the_row_and_a_polling_progress_card(
        client, user, make_batch):
    client.force_login(user)
    batch = make_batch()
    set_rows(batch, [0, 1, 2], "succeeded", output="ok")
    set_rows(batch, [1], "failed", error="boom", output="")
    batch.finalise_if_done()
    response = client.post(url("batch_retry_row", batch.pk, 1),
                           {"next": url("batch_detail", batch.pk) + "?status=failed"}, **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<tr id="row-1"') and 'data-status="pending"' in body
    card = body.split('id="batch-progress"', 1)[1].split(">", 1)[0]
    assert 'hx-swap-oob="true"' in card and 'hx-trigger="every 2s"' in card
    assert batch.results.get(index=1).status == "pending"
    again = client.post(url("batch_retry_row", batch.pk, 0), **HX)
    assert again.status_code == 409 and "only failed or cancelled" in again.content.decode()


# 10. Exports follow the filter ----------------------------------------------------------------

def test_the_download_links_follow_the_status_filter(client, user, make_batch):
    client.force_login(user)
    batch = make_batch()
    set_rows(batch, [0], "succeeded", output="ok")
    set_rows(batch, [1], "failed", error="boom")
    page = client.get(url("batch_detail", batch.pk), {"status": "failed"}).content.decode()
    links = page.split('id="result-downloads"', 1)[1].split("{% endif %}", 1)[0][:1200]
    assert f"/api/batches/{batch.pk}/export/?format=csv&amp;status=failed" in links
    assert "Download failed rows" in links
    exported = client.get(f"/api/batches/{batch.pk}/export/?format=csv&status=failed")
    text = b"".join(exported.streaming_content).decode("utf-8-sig")
    assert text.count("\n") == 2 and "boom" in text
    everything = client.get(url("batch_detail", batch.pk)).content.decode()
    assert f"/api/batches/{batch.pk}/export/?format=csv\"" in everything


# 14. Small things ---------------------------------------------------------------------------

def test_a_new_batch_was_created_just_now(client, user, make_batch):
    client.force_login(user)
    make_batch()
    dashboard = client.get(url("dashboard")).content.decode()
    assert "just now" in dashboard and "0\xa0minutes ago" not in dashboard


def test_the_admin_is_titled_batchsite_administration(admin_client):
    assert "Batchsite administration" in admin_client.get("/admin/").content.decode()


def test_the_user_menu_links_the_api_docs_and_the_token_page(client, user):
    client.force_login(user)
    page = client.get(url("dashboard")).content.decode()
    menu = page.split('id="user-menu"', 1)[1].split("</details>", 1)[0]
    assert 'href="/api/docs/"' in menu and 'href="/api/token/"' in menu
    assert "Log out" in menu
    assert '<a class="skip-link" href="#content">' in page and 'id="content"' in page


def test_demo_setup_prints_the_address_it_is_given(db, capsys):
    call_command("demo_setup", address="127.0.0.1:8123")
    assert "log in at http://127.0.0.1:8123/ as 'demo'" in capsys.readouterr().out


def test_the_column_picker_can_hide_every_input_column(client, user, make_batch):
    client.force_login(user)
    batch = make_batch(rows=[{"text": "a", "mood": "b"}])
    page = client.get(url("batch_detail", batch.pk), {"pick": "1"}).content.decode()
    assert 'class="input-head"' not in page and 'class="answer-head">Answer<' in page
    assert 'class="input-head"' not in client.get(url("batch_detail", batch.pk)).content.decode()
