"""The pages for iterating: drafts, samples, new versions, compare, re-running chosen rows."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from batches import iterations
from batches.models import Batch, BatchResult
from tests.helpers import engine as engine_helpers
from tests.web.test_views import HX, XSS, form_data, messages_of, upload

enqueued = engine_helpers.enqueued

pytestmark = pytest.mark.django_db(transaction=True)

DRAFT_FORM = {"prompt": "Shout: {{text}}", "system_instruction": "", "model": "gemini-2.5-flash",
              "temperature": "", "max_output_tokens": "", "concurrency": "8",
              "max_retries": "3"}


def url(name, *args):
    return reverse(name, args=args)


@pytest.fixture
def alice(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def draft(make_batch):
    return make_batch([{"text": f"row {i}"} for i in range(8)], start=False, name="Draft")


def finished(make_batch, outputs, **kwargs):
    batch = make_batch([{"text": f"row {i}"} for i in range(len(outputs))], **kwargs)
    for i, out in enumerate(outputs):
        batch.results.filter(index=i).update(status="succeeded", output=out, attempts=1)
    batch.finalise_if_done()
    batch.refresh_from_db()
    return batch


def test_save_as_draft_stores_the_rows_and_starts_nothing(alice, user, enqueued):
    response = alice.post(url("batch_new"), form_data(
        file=upload("text\nhello\nworld\n", "greetings.csv"), draft="1"))
    batch = Batch.objects.get(owner=user)
    assert response.status_code == 302 and batch.status == "draft" and enqueued == []
    assert "as a draft" in messages_of(response)[0]
    page = alice.get(url("batch_detail", batch.pk)).content.decode()
    assert 'id="draft-panel"' in page and 'id="start-batch"' in page
    assert 'hx-trigger="every 2s"' not in page  # a draft has nothing to poll for


def test_a_draft_edit_rebuilds_the_prompts(alice, draft, enqueued):
    response = alice.post(url("batch_draft_edit", draft.pk), DRAFT_FORM)
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.prompt_template == "Shout: {{text}}" and draft.concurrency == 8
    assert draft.results.get(index=5).prompt == "Shout: row 5"


def test_a_draft_edit_naming_a_missing_column_is_refused_with_the_creation_message(
        alice, draft, enqueued):
    response = alice.post(url("batch_draft_edit", draft.pk),
                          {**DRAFT_FORM, "prompt": "Say: {{txt}}"}, follow=True)
    assert "{{txt}} is not a column of the file. The columns are: text." in \
        response.content.decode()
    draft.refresh_from_db()
    assert draft.prompt_template == "Say: {{text}}" and draft.concurrency == 16


def test_try_on_rows_runs_a_sample_and_shows_it_next_to_the_inputs(alice, draft, enqueued):
    response = alice.post(url("batch_sample", draft.pk), {"mode": "first", "size": "3"})
    assert response.status_code == 302 and response["Location"].endswith("#sample")
    assert messages_of(response) == ["Trying 3 rows."] and enqueued == [draft.pk]
    draft.results.filter(index=1).update(status="succeeded", output=f"answer {XSS}",
                                         prompt_tokens=10, output_tokens=4)

    fragment = alice.get(url("batch_sample_rows", draft.pk), **HX).content.decode()
    assert 'id="sample-row-1"' in fragment and "answer &lt;script&gt;" in fragment
    assert "14 tokens paid" in fragment and 'hx-trigger="every 1s"' in fragment
    assert 'id="sample-row-3"' not in fragment
    draft.results.filter(sample=True).update(status="succeeded")
    done = alice.get(url("batch_sample_rows", draft.pk), **HX).content.decode()
    # Rows go by the numbers the results show (rows sent as JSON count from 1).
    assert 'hx-trigger' not in done and 'name="indexes" value="1,2,3"' in done


def test_try_on_chosen_rows_and_on_a_seeded_random_sample(alice, draft, enqueued):
    alice.post(url("batch_sample", draft.pk), {"mode": "indexes", "indexes": "1, 4-5"})
    assert set(draft.results.filter(sample=True).values_list("index", flat=True)) == {0, 3, 4}
    response = alice.post(url("batch_sample", draft.pk), {"mode": "random", "size": "2",
                                                         "seed": "7"})
    assert messages_of(response)[-1] == "Trying 2 rows (seed 7)."
    bad = alice.post(url("batch_sample", draft.pk), {"mode": "indexes", "indexes": "1, 99"})
    assert messages_of(bad)[-1] == "The batch has no row 99 (rows are numbered 1 to 8)."
    junk = alice.post(url("batch_sample", draft.pk), {"mode": "indexes", "indexes": "x"})
    assert "is not a row number" in messages_of(junk)[-1]


def test_start_runs_the_draft_and_a_second_start_is_refused(alice, draft, enqueued):
    alice.post(url("batch_start", draft.pk))
    draft.refresh_from_db()
    assert draft.status == "pending" and enqueued == [draft.pk]
    response = alice.post(url("batch_start", draft.pk))
    assert messages_of(response)[-1] == "Only a draft can be started; this batch is pending."


def test_new_version_from_a_corrected_file_opens_the_new_draft(alice, make_batch, enqueued):
    parent = finished(make_batch, ["a", "b"], name="Reviews")
    response = alice.post(url("batch_new_version", parent.pk),
                          {"name": "", "file": upload("text\nrow 0\nrow 1 fixed\n")})
    version = Batch.objects.get(parent=parent)
    assert response["Location"] == url("batch_detail", version.pk)
    assert version.status == "draft" and version.name == "Reviews (v2)"
    page = alice.get(url("batch_detail", version.pk)).content.decode()
    assert url("batch_compare", version.pk) in page


def test_new_version_from_a_bad_file_names_the_line_and_creates_nothing(alice, make_batch,
                                                                         enqueued):
    parent = finished(make_batch, ["a"])
    response = alice.post(url("batch_new_version", parent.pk),
                          {"file": upload("text\nok\nbad,extra\n")})
    assert "line 3" in messages_of(response)[0].lower()
    assert not Batch.objects.filter(parent=parent).exists()


def test_compare_shows_both_answers_and_filters_changed_rows(alice, make_batch, enqueued):
    a = finished(make_batch, ["same", "old", XSS])
    b = finished(make_batch, ["same", "new", XSS], parent=a)
    page = alice.get(url("batch_compare", b.pk)).content.decode()
    assert 'id="changed-count">1<' in page and "&lt;script&gt;" in page and XSS not in page
    changed = alice.get(url("batch_compare", b.pk) + "?changed=1").content.decode()
    assert 'id="compare-row-1"' in changed and 'id="compare-row-0"' not in changed
    export = alice.get(url("batch_compare_export", b.pk))
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert rows[2][:6] == ["1", "row 1", "succeeded", "old", "succeeded", "new"]


def test_compare_with_another_users_batch_is_404(alice, make_batch, other_user, enqueued):
    mine = finished(make_batch, ["x"])
    theirs = finished(make_batch, ["y"], owner=other_user)
    assert alice.get(url("batch_compare", mine.pk) + f"?with={theirs.pk}").status_code == 404
    assert alice.get(url("batch_compare", theirs.pk) + f"?with={mine.pk}").status_code == 404
    assert alice.get(url("batch_compare_export", mine.pk) + f"?with={theirs.pk}"
                     ).status_code == 404
    other_mine = finished(make_batch, ["z"])
    choose = alice.get(url("batch_compare", mine.pk)).content.decode()  # no parent: choose one
    assert f'value="{other_mine.pk}"' in choose and f'value="{theirs.pk}"' not in choose


def test_ticked_rows_run_again_including_succeeded_ones(alice, make_batch, enqueued):
    batch = finished(make_batch, ["a", "b", "c"])
    page = alice.get(url("batch_detail", batch.pk)).content.decode()
    assert 'form="rerun-form"' in page
    response = alice.post(url("batch_rerun", batch.pk), {"scope": "selected",
                                                         "indexes": ["0", "2"]})
    assert messages_of(response) == ["Running 2 rows again (not from the cache)."]
    statuses = dict(batch.results.values_list("index", "status"))
    assert statuses == {0: "pending", 1: "succeeded", 2: "pending"}
    assert BatchResult.objects.get(batch=batch, index=0).bypass_cache


def test_all_failed_and_all_matching_the_filter(alice, make_batch, enqueued):
    batch = finished(make_batch, ["a", "b", "c"])
    batch.results.filter(index=1).update(status="failed", output="", error="boom")
    alice.post(url("batch_rerun", batch.pk), {"scope": "failed"})
    assert dict(batch.results.values_list("index", "status"))[1] == "pending"
    batch.results.filter(index=1).update(status="succeeded")
    alice.post(url("batch_rerun", batch.pk), {"scope": "filter", "status": "succeeded"})
    assert set(batch.results.values_list("status", flat=True)) == {"pending"}


def test_rerun_with_nothing_ticked_says_so(alice, make_batch, enqueued):
    batch = finished(make_batch, ["a"])
    response = alice.post(url("batch_rerun", batch.pk), {"scope": "selected"})
    assert messages_of(response) == ["Tick the rows to run again first."]


@pytest.mark.parametrize("name", ["batch_draft_edit", "batch_sample", "batch_start",
                                  "batch_new_version", "batch_rerun"])
def test_another_users_batch_is_404_for_every_action(alice, make_batch, other_user, name,
                                                      enqueued):
    theirs = make_batch(owner=other_user, start=False)
    assert alice.post(url(name, theirs.pk), {"scope": "failed"}).status_code == 404
    assert Batch.objects.get(pk=theirs.pk).status == "draft"


def test_the_batch_page_counts_rows_from_the_cache(alice, make_batch, enqueued):
    batch = finished(make_batch, ["a", "b"])
    BatchResult.objects.filter(batch=batch, index=0).update(cached=True, prompt_tokens=5,
                                                            output_tokens=2)
    batch.refresh_counts()
    page = alice.get(url("batch_detail", batch.pk)).content.decode()
    assert "1 of 2 rows reused identical earlier answers: 5 prompt + 2 output tokens" in page
    assert "<dt>Tokens saved</dt><dd>7</dd>" in page and "badge-cached" in page
    assert iterations.cache_figures(batch).rows == 1


def test_chosen_rows_of_a_file_go_by_its_line_numbers_as_the_results_show_them(
        alice, user, enqueued):
    alice.post(url("batch_new"), form_data(
        file=upload("text\nfirst\nsecond\nthird\n", "lines.csv"), draft="1"))
    batch = Batch.objects.get(owner=user)
    page = alice.get(url("batch_detail", batch.pk)).content.decode()
    assert '<th scope="row" class="num muted row-number" data-label="Row">3</th>' in page

    alice.post(url("batch_sample", batch.pk), {"mode": "indexes", "indexes": "3"})

    assert list(batch.results.filter(sample=True).values_list("input", flat=True)) == [
        {"text": "second"}]
    bad = alice.post(url("batch_sample", batch.pk), {"mode": "indexes", "indexes": "1"})
    assert messages_of(bad)[-1] == "The batch has no row 1 (rows are numbered 2 to 4)."


def test_a_columns_drafts_sample_shows_one_line_per_output_field(alice, make_batch, enqueued):
    draft = make_batch([{"text": "a"}], start=False, output_fields=[
        {"name": "mood", "type": "text"}, {"name": "stars", "type": "integer"}])
    iterations.batch_sample(batch=draft, size=1)
    draft.results.update(status="succeeded", output='{"mood": "calm", "stars": 4}',
                         data={"mood": "calm", "stars": 4})
    fragment = alice.get(url("batch_sample_rows", draft.pk), **HX).content.decode()
    assert '<span class="muted">mood:</span> calm' in fragment
    assert '<span class="muted">stars:</span> 4' in fragment


def test_a_drafts_output_schema_is_edited_in_the_panel_and_kept_when_unchanged(
        alice, make_batch, enqueued):
    draft = make_batch([{"text": "a"}, {"text": "b"}], start=False, output_fields=[
        {"name": "mood", "type": "text"}])
    page = alice.get(url("batch_detail", draft.pk)).content.decode()
    assert "&quot;mood&quot;" in page  # the schema, escaped, in the panel's box
    iterations.batch_sample(batch=draft, size=1)
    draft.results.filter(index=0).update(status="succeeded", output='{"mood": "calm"}',
                                         data={"mood": "calm"})

    # Saving the panel as shown (same schema) keeps the sample's answer.
    form = {**DRAFT_FORM, "prompt": "Say: {{text}}", "concurrency": "16",
            "output_schema": json.dumps(draft.response_schema, indent=2)}
    alice.post(url("batch_draft_edit", draft.pk), form)
    assert draft.results.get(index=0).status == "succeeded"

    alice.post(url("batch_draft_edit", draft.pk), {**form, "output_schema": ""})
    draft.refresh_from_db()
    assert draft.response_schema is None and draft.results.get(index=0).status == "pending"


def test_a_bad_output_schema_in_the_draft_panel_is_refused_naming_the_problem(alice, draft,
                                                                             enqueued):
    junk = alice.post(url("batch_draft_edit", draft.pk),
                      {**DRAFT_FORM, "output_schema": "{not json"}, follow=True)
    assert "Output schema (JSON): not valid JSON" in junk.content.decode()
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    clash = alice.post(url("batch_draft_edit", draft.pk),
                       {**DRAFT_FORM, "output_schema": json.dumps(schema)}, follow=True)
    assert "input column" in clash.content.decode()
    draft.refresh_from_db()
    assert draft.response_schema is None and draft.prompt_template == "Say: {{text}}"
