"""Pages, htmx fragments and actions through Django's test client."""

import io
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from batches.models import Batch, BatchResult

HX = {"HTTP_HX_REQUEST": "true"}
XSS = "<script>alert(1)</script>"

ACTIONS = ["batch_cancel", "batch_pause", "batch_resume", "batch_retry_failed", "batch_delete"]


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def batch(make_batch):
    return make_batch(name="Reviews")


def url(name, *args):
    return reverse(name, args=args)


def upload(text: str, name: str = "rows.csv") -> io.BytesIO:
    f = io.BytesIO(text.encode("utf-8"))
    f.name = name
    return f


def finish(batch: Batch, status: str = "succeeded") -> None:
    batch.results.update(status=status, output="done", attempts=1)
    batch.finalise_if_done()
    batch.refresh_from_db()


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def form_data(**overrides):
    data = {"prompt": "Say: {{text}}", "model": "gemini-2.5-flash", "concurrency": "4",
            "max_retries": "2", "priority": "1", "name": "", "system_instruction": "",
            "temperature": "", "max_output_tokens": "", "conversation_column": "", "sheet": ""}
    data.update(overrides)
    return data


# Login and permissions --------------------------------------------------------------------

def test_it_redirects_anonymous_visitors_to_the_login_page(client, batch):
    for target in [url("dashboard"), url("batch_new"), url("batch_detail", batch.pk),
                   url("batch_detail_progress", batch.pk)]:
        response = client.get(target)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    response = client.post(url("batch_cancel", batch.pk))
    assert response.status_code == 302
    assert batch.results.filter(status="pending").count() == 3


def test_it_logs_in_and_out_with_post(client, user):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(url("dashboard")).status_code == 302


def test_it_rejects_a_wrong_password_with_a_message(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_another_users_batch_is_404_on_the_page_every_partial_and_every_action(
    client, other_user, make_batch
):
    theirs = make_batch(owner=other_user, name="Not yours")
    theirs.results.filter(index=0).update(status="failed")
    client.force_login(other_user.__class__.objects.create_user("mallory", password="x-123456"))
    assert client.get(url("batch_detail", theirs.pk)).status_code == 404
    assert client.get(url("batch_detail", theirs.pk), **HX).status_code == 404
    assert client.get(url("batch_detail_progress", theirs.pk)).status_code == 404
    assert client.get(url("batch_detail_progress", theirs.pk), **HX).status_code == 404
    for action in ACTIONS:
        assert client.post(url(action, theirs.pk)).status_code == 404, action
    assert client.post(url("batch_retry_row", theirs.pk, 0)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "pending" and not theirs.cancel_requested
    assert theirs.results.filter(status="failed").count() == 1


def test_the_404_page_is_the_sites_own(alice):
    response = alice.get(url("batch_detail", 999999))
    assert response.status_code == 404
    assert b"Not found" in response.content
    assert b"not yours" in response.content


def test_staff_see_every_users_batch(client, staff_user, other_user, make_batch):
    theirs = make_batch(owner=other_user, name="Bob's batch")
    client.force_login(staff_user)
    assert "Bob&#x27;s batch" in client.get(url("dashboard")).content.decode()
    assert client.get(url("batch_detail", theirs.pk)).status_code == 200


def test_every_state_changing_form_requires_the_csrf_token(user, batch):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    targets = [url(action, batch.pk) for action in ACTIONS]
    targets += [url("batch_retry_row", batch.pk, 0), url("batch_new"),
                url("batch_new_preview"), reverse("logout")]
    for target in targets:
        assert csrf_client.post(target).status_code == 403, target
    assert Batch.objects.filter(pk=batch.pk, cancel_requested=False, paused=False).exists()


def test_the_body_sends_the_csrf_token_with_every_htmx_request(alice, batch):
    page = alice.get(url("batch_detail", batch.pk)).content.decode()
    assert re.search(r"""<body hx-headers='\{"x-csrftoken": "[^"]+"\}'>""", page)
    assert "django_htmx/htmx-2.min.js" in page


# Dashboard ----------------------------------------------------------------------------------

def test_the_dashboard_shows_an_empty_state_with_a_call_to_action(alice):
    response = alice.get(url("dashboard"))
    assert b"No batches yet" in response.content
    assert reverse("batch_new").encode() in response.content


def test_the_dashboard_lists_only_the_users_own_batches(alice, make_batch, other_user):
    make_batch(name="Mine")
    make_batch(owner=other_user, name="Theirs")
    content = alice.get(url("dashboard")).content.decode()
    assert "Mine" in content
    assert "Theirs" not in content


def test_the_dashboard_rows_poll_while_a_batch_is_active(alice, batch):
    batch.results.filter(index=0).update(status="succeeded")
    page = alice.get(url("dashboard")).content.decode()
    assert 'hx-trigger="every 2s"' in page
    fragment = alice.get(url("dashboard"), **HX)
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert '<tbody id="dashboard-rows"' in body and 'hx-trigger="every 2s"' in body
    assert "<html" not in body
    assert "33%" in body  # 1 of 3 rows done, counted live


def test_the_dashboard_stops_polling_when_no_batch_is_active(alice, batch):
    finish(batch)
    fragment = alice.get(url("dashboard"), **HX)
    assert fragment.status_code == 286
    assert "hx-trigger" not in fragment.content.decode()
    assert "hx-trigger" not in alice.get(url("dashboard")).content.decode()


# Batch page ---------------------------------------------------------------------------------

def test_the_batch_page_shows_the_header_progress_and_results(alice, batch):
    batch.results.filter(index=0).update(status="succeeded", output="Hello there")
    batch.results.filter(index=1).update(status="failed", error="Safety block", attempts=2)
    content = alice.get(url("batch_detail", batch.pk)).content.decode()
    assert "Reviews" in content and batch.model_name in content
    assert 'id="batch-progress"' in content and 'hx-trigger="every 2s"' in content
    assert "67%" in content
    assert "Hello there" in content and "Safety block" in content
    assert url("batch_retry_row", batch.pk, 1) in content
    assert url("batch_retry_row", batch.pk, 0) not in content
    assert f"/api/batches/{batch.pk}/export/?format=csv" in content


def test_the_progress_partial_keeps_polling_while_the_batch_runs(alice, batch):
    response = alice.get(url("batch_detail_progress", batch.pk), **HX)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'hx-trigger="every 2s"' in body and "<html" not in body
    assert "HX-Trigger" not in response.headers


def test_the_progress_partial_stops_polling_once_the_batch_has_ended(alice, batch):
    finish(batch)
    response = alice.get(url("batch_detail_progress", batch.pk), **HX)
    assert response.status_code == 286
    assert "hx-trigger" not in response.content.decode()
    assert "batch-ended" in response.headers["HX-Trigger"]
    assert "100%" in response.content.decode()


def test_the_progress_shows_that_the_batch_waits_on_the_model_api(alice, batch):
    from django.utils import timezone

    Batch.objects.filter(pk=batch.pk).update(api_waiting_since=timezone.now(),
                                             last_error="Slow down")
    body = alice.get(url("batch_detail_progress", batch.pk), **HX).content.decode()
    assert "Waiting on the model API" in body
    assert "Slow down" in body


def test_action_buttons_appear_only_when_they_apply(alice, batch):
    body = alice.get(url("batch_detail_progress", batch.pk)).content.decode()
    assert url("batch_pause", batch.pk) in body and url("batch_cancel", batch.pk) in body
    assert url("batch_resume", batch.pk) not in body
    assert url("batch_retry_failed", batch.pk) not in body
    batch.results.filter(index=0).update(status="failed")
    batch.results.exclude(index=0).update(status="succeeded")
    batch.finalise_if_done()
    body = alice.get(url("batch_detail_progress", batch.pk)).content.decode()
    assert url("batch_pause", batch.pk) not in body and url("batch_cancel", batch.pk) not in body
    assert url("batch_retry_failed", batch.pk) in body
    assert url("batch_delete", batch.pk) in body


def test_model_output_and_file_content_are_escaped(alice, make_batch):
    batch = make_batch(rows=[{"text": XSS}], name=XSS)
    batch.results.update(status="failed", output=XSS + " out", error=XSS)
    for response in [alice.get(url("batch_detail", batch.pk)),
                     alice.get(url("batch_detail", batch.pk), **HX),
                     alice.get(url("batch_detail_progress", batch.pk) + "?seen=0:pending", **HX),
                     alice.get(url("dashboard"))]:
        content = response.content.decode()
        assert XSS not in content
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_the_results_filter_by_status(alice, batch):
    batch.results.filter(index=1).update(status="failed", error="nope")
    fragment = alice.get(url("batch_detail", batch.pk) + "?status=failed", **HX)
    body = fragment.content.decode()
    assert 'id="batch-results"' in body and "<html" not in body
    assert 'id="row-1"' in body
    assert 'id="row-0"' not in body and 'id="row-2"' not in body
    empty = alice.get(url("batch_detail", batch.pk) + "?status=succeeded", **HX).content.decode()
    assert "No succeeded rows" in empty


def test_the_results_are_paginated_from_the_status_counts(alice, make_batch):
    batch = make_batch(rows=[{"text": f"row {i}"} for i in range(120)])
    batch.results.filter(index__gte=100).update(status="failed")
    body = alice.get(url("batch_detail", batch.pk) + "?page=3", **HX).content.decode()
    assert 'id="row-100"' in body and 'id="row-119"' in body and 'id="row-99"' not in body
    assert "page 3 of 3" in body
    body = alice.get(url("batch_detail", batch.pk) + "?status=pending&page=2",
                     **HX).content.decode()
    assert 'id="row-50"' in body and 'id="row-99"' in body and 'id="row-100"' not in body
    body = alice.get(url("batch_detail", batch.pk) + "?status=failed&page=9", **HX).content.decode()
    assert 'id="row-100"' in body and "page 1 of 1" in body


def test_long_outputs_are_expandable(alice, batch):
    batch.results.filter(index=0).update(status="succeeded", output="word " * 200)
    body = alice.get(url("batch_detail", batch.pk), **HX).content.decode()
    assert "<details><summary>word word" in body


def test_a_history_restore_gets_the_whole_page(alice, batch):
    response = alice.get(url("batch_detail", batch.pk) + "?status=failed", **HX,
                         HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in response.content.decode()


# Actions ------------------------------------------------------------------------------------

def test_cancel_says_how_many_rows_it_cancelled(alice, batch):
    response = alice.post(url("batch_cancel", batch.pk))
    assert response.status_code == 302
    assert response["Location"] == url("batch_detail", batch.pk)
    assert messages_of(response) == [
        "Cancelled 3 pending rows; rows already running will finish."
    ]
    assert batch.results.filter(status="cancelled").count() == 3


def test_an_action_that_does_not_apply_shows_an_error_not_a_500(alice, batch):
    finish(batch)
    response = alice.post(url("batch_cancel", batch.pk))
    assert response.status_code == 302
    assert messages_of(response) == ["The batch is already completed."]
    response = alice.post(url("batch_retry_failed", batch.pk), follow=True)
    assert response.status_code == 200
    assert "The batch has no failed rows to retry." in response.content.decode()


def test_pause_and_resume(alice, batch):
    response = alice.post(url("batch_pause", batch.pk))
    assert messages_of(response) == ["Paused; 3 rows waiting. Rows already running will finish."]
    batch.refresh_from_db()
    assert batch.status == "paused"
    response = alice.post(url("batch_resume", batch.pk))
    assert messages_of(response)[-1] == "Resumed."
    batch.refresh_from_db()
    assert batch.status == "pending" and not batch.paused


def test_retry_failed_and_retry_one_row(alice, batch):
    batch.results.filter(index__in=[0, 1]).update(status="failed", error="boom")
    response = alice.post(url("batch_retry_row", batch.pk, 1),
                          {"next": url("batch_detail", batch.pk) + "?status=failed"})
    assert response["Location"] == url("batch_detail", batch.pk) + "?status=failed"
    assert messages_of(response) == ["Retrying row 2."]  # index 1 is the second row
    assert BatchResult.objects.get(batch=batch, index=1).status == "pending"
    response = alice.post(url("batch_retry_failed", batch.pk))
    assert messages_of(response)[-1] == "Retrying 1 failed row."
    assert not batch.results.filter(status="failed").exists()


def test_retry_row_ignores_a_next_url_on_another_site(alice, batch):
    batch.results.filter(index=0).update(status="failed")
    response = alice.post(url("batch_retry_row", batch.pk, 0), {"next": "https://evil.example/"})
    assert response["Location"] == url("batch_detail", batch.pk)


def test_delete_removes_the_batch_and_goes_to_the_dashboard(alice, batch):
    response = alice.post(url("batch_delete", batch.pk))
    assert response["Location"] == url("dashboard")
    assert messages_of(response) == ["Deleted “Reviews” and its 3 rows."]
    assert not Batch.objects.filter(pk=batch.pk).exists()


def test_actions_refuse_get(alice, batch):
    for action in ACTIONS:
        assert alice.get(url(action, batch.pk)).status_code == 405


# New batch ----------------------------------------------------------------------------------

def test_the_new_batch_page_offers_the_models_and_states_the_size_limit(alice, settings):
    settings.GEMINI_MODELS = ["gemini-2.5-flash", "gemini-2.5-pro"]
    settings.BATCH_MAX_UPLOAD_MB = 7
    content = alice.get(url("batch_new")).content.decode()
    assert '<option value="gemini-2.5-pro"' in content
    assert "At most 7 MB" in content
    assert f'hx-post="{url("batch_new_preview")}"' in content
    assert 'hx-encoding="multipart/form-data"' in content


def test_it_creates_a_batch_from_an_upload(alice, user):
    response = alice.post(url("batch_new"), form_data(
        file=upload("text,n\nhello,1\nworld,2\n", "greetings.csv"), name="Greetings",
    ))
    batch = Batch.objects.get(owner=user)
    assert response.status_code == 302
    assert response["Location"] == url("batch_detail", batch.pk)
    assert messages_of(response) == ["Created “Greetings” with 2 rows."]
    assert batch.concurrency == 4 and batch.max_retries == 2
    assert list(batch.results.order_by("index").values_list("prompt", flat=True)) == [
        "Say: hello", "Say: world"]


def test_a_bad_file_shows_the_line_next_to_the_file_field_and_creates_nothing(alice):
    response = alice.post(url("batch_new"), form_data(
        file=upload("text,n\nok,1\nbad,2,extra\n"), name="Kept name",
    ))
    assert response.status_code == 200
    content = response.content.decode()
    field = content.split('id="field-file"', 1)[1].split('id="field-name"', 1)[0]
    assert re.search(r'class="error"[^>]*>[^<]*line 3', field, re.IGNORECASE)
    # The file stays on the server: the form comes back using it, so it need not be chosen again.
    assert "Using <strong>rows.csv</strong>" in content
    assert 'name="staged_upload"' in content
    assert 'value="Kept name"' in content
    assert "Say: {{text}}</textarea>" in content
    assert Batch.objects.count() == 0 and BatchResult.objects.count() == 0


def test_an_unknown_placeholder_is_an_error_on_the_prompt_field(alice):
    response = alice.post(url("batch_new"), form_data(
        file=upload("text\nhello\n"), prompt="Say: {{txt}}",
    ))
    content = response.content.decode()
    field = content.split('id="field-prompt"', 1)[1].split('id="field-model"', 1)[0]
    assert "{{txt}} is not a column" in field
    assert Batch.objects.count() == 0


def test_a_missing_conversation_column_is_an_error_on_its_field(alice):
    response = alice.post(url("batch_new"), form_data(
        file=upload("text\nhello\n"), conversation_column="thread",
    ))
    content = response.content.decode()
    field = content.split('id="field-conversation_column"', 1)[1]
    assert "The conversation column" in field.split("</div>", 1)[0]
    assert Batch.objects.count() == 0


def test_an_oversized_file_is_refused_before_it_is_read(alice, settings, monkeypatch):
    from batches import ingest

    def must_not_read(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(ingest, "open_table", must_not_read)
    monkeypatch.setattr(ingest, "preview", must_not_read)
    settings.BATCH_MAX_UPLOAD_MB = 1
    big = upload("text\n" + "x" * (1024 * 1024 + 10) + "\n")
    response = alice.post(url("batch_new"), form_data(file=big))
    assert "the limit is 1 MB" in response.content.decode()
    assert Batch.objects.count() == 0
    big.seek(0)
    preview = alice.post(url("batch_new_preview"), {"file": big, "prompt": "x"}, **HX)
    assert "the limit is 1 MB" in preview.content.decode()


def test_the_preview_shows_columns_rendered_prompts_and_unknown_placeholders(alice):
    response = alice.post(url("batch_new_preview"), {
        "file": upload("name,review\nAnn,great\nBob,<b>bad</b>\nCy,ok\nDee,meh\n"),
        "prompt": "{{name}} said {{review}} {{stars}}",
    }, **HX)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert 'data-insert-column="name"' in body and 'data-insert-column="review"' in body
    assert "Ann said great" in body and "Cy said ok" in body
    assert "Dee said" not in body
    assert "Bob said &lt;b&gt;bad&lt;/b&gt;" in body
    unknown = body.split('id="preview-unknown"', 1)[1].split("</div>", 1)[0]
    assert "{{stars}}" in unknown and "{{name}}" not in unknown


def test_the_preview_clips_long_values_and_rendered_prompts(alice):
    body = alice.post(url("batch_new_preview"), {
        "file": upload("name\n" + "z" * 1_000_000 + "\n"), "prompt": "Bye {{name}}",
    }, **HX).content.decode()
    assert "Bye " + "z" * 4000 in body
    assert "z" * 4001 not in body


def test_the_preview_refuses_a_prompt_over_the_cap(alice, settings):
    settings.BATCH_MAX_PROMPT_CHARS = 100
    response = alice.post(url("batch_new_preview"), {"prompt": "{{" + " " * 200}, **HX)
    assert response.status_code == 200
    assert "the limit is 100" in response.content.decode()


def test_the_new_batch_page_refuses_high_priority_without_the_permission(alice):
    response = alice.post(url("batch_new"), {
        "file": upload("a\n1\n"), "prompt": "{{a}}", "model": "gemini-2.5-flash",
        "concurrency": 4, "max_retries": 1, "priority": 0})
    assert response.status_code == 200
    assert "use high priority" in response.content.decode()
    assert not Batch.objects.exists()


def test_the_preview_shows_ingest_errors_with_their_line(alice):
    body = alice.post(url("batch_new_preview"), {
        "file": upload("a,b\n1,2\n3,4,5\n"), "prompt": "{{a}}",
    }, **HX).content.decode()
    error = body.split('id="preview-file-error"', 1)[1].split("</div>", 1)[0]
    assert "line 3" in error.lower()


def test_the_preview_without_a_file_asks_for_one(alice):
    body = alice.post(url("batch_new_preview"), {"prompt": "{{a}}"}, **HX).content.decode()
    assert "Choose a file" in body


# Configuration notices ----------------------------------------------------------------------

def test_the_new_batch_page_says_to_set_the_api_key_when_it_is_missing(alice, settings):
    settings.GEMINI_API_KEY = ""
    settings.DEMO_MODE = False
    content = alice.get(url("batch_new")).content.decode()
    assert 'id="api-key-warning"' in content and "GEMINI_API_KEY" in content
    settings.GEMINI_API_KEY = "secret-key-value"
    content = alice.get(url("batch_new")).content.decode()
    assert 'id="api-key-warning"' not in content
    assert "secret-key-value" not in content


def test_demo_mode_shows_a_banner_on_every_page_and_no_key_warning(alice, batch, settings):
    settings.GEMINI_API_KEY = ""
    settings.DEMO_MODE = True
    banner = "Answers come from the built-in demo model, not Gemini."
    for target in [url("dashboard"), url("batch_new"), url("batch_detail", batch.pk)]:
        content = alice.get(target).content.decode()
        assert banner in content, target
    assert 'id="api-key-warning"' not in alice.get(url("batch_new")).content.decode()
    settings.DEMO_MODE = False
    assert banner not in alice.get(url("dashboard")).content.decode()


def test_the_active_batch_limit_is_shown_as_a_form_error(alice, batch, settings):
    settings.BATCH_MAX_ACTIVE_PER_USER = 1
    response = alice.post(url("batch_new"), form_data(file=upload("text\nhello\n")))
    assert response.status_code == 200
    assert "You already have 1 active batches" in response.content.decode()
    assert Batch.objects.count() == 1


def test_the_server_error_page_renders_without_a_request():
    from django.template.loader import render_to_string

    assert "Something went wrong" in render_to_string("500.html")
