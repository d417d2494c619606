"""The API for drafts, samples, new versions, comparisons and re-runs."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.cache import cache
from django.utils import timezone

from batches.models import Batch, BatchResult
from tests.conftest import csv_file
from tests.helpers import engine as engine_helpers
from tests.helpers.api import client_for, orm_batch

enqueued = engine_helpers.enqueued

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = [{"text": f"t{i}"} for i in range(6)]


@pytest.fixture(autouse=True)
def clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api(user):
    return client_for(user)


def create_draft(api, rows=ROWS, **extra):
    response = api.post("/api/batches/", {"prompt": "Say: {{text}}", "rows": rows,
                                          "start": False, **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_start_false_makes_a_draft_that_starts_on_request(api, enqueued):
    body = create_draft(api)
    assert body["status"] == "draft" and enqueued == []

    response = api.post(f"/api/batches/{body['id']}/start/")

    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert enqueued == [body["id"]]


def test_starting_a_batch_that_is_not_a_draft_is_409(api, enqueued):
    body = create_draft(api)
    api.post(f"/api/batches/{body['id']}/start/")
    response = api.post(f"/api/batches/{body['id']}/start/")
    assert response.status_code == 409
    assert "Only a draft can be started" in response.json()["detail"]


def test_a_sample_runs_the_chosen_rows(api, enqueued):
    body = create_draft(api)
    response = api.post(f"/api/batches/{body['id']}/sample/", {"size": 2}, format="json")
    assert response.status_code == 202 and response.json() == {"indexes": [0, 1], "seed": None}
    assert set(BatchResult.objects.filter(batch_id=body["id"], sample=True)
               .values_list("index", flat=True)) == {0, 1}
    assert Batch.objects.get(pk=body["id"]).sampling and enqueued == [body["id"]]


def test_a_sample_larger_than_the_batch_uses_every_row(api, enqueued):
    body = create_draft(api)
    response = api.post(f"/api/batches/{body['id']}/sample/", {"size": 500}, format="json")
    assert response.json()["indexes"] == list(range(6))


def test_a_sample_of_a_row_that_does_not_exist_is_400(api, enqueued):
    body = create_draft(api)
    response = api.post(f"/api/batches/{body['id']}/sample/", {"indexes": [6]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"indexes": ["The batch has no row 6 (rows are numbered 0 to 5)."]}


def test_editing_a_drafts_prompt_into_a_missing_column_is_refused_like_at_creation(api, enqueued):
    body = create_draft(api)
    at_creation = api.post("/api/batches/", {"prompt": "Say: {{nope}}", "rows": ROWS},
                           format="json").json()
    response = api.patch(f"/api/batches/{body['id']}/", {"prompt": "Say: {{nope}}",
                                                         "temperature": 0.3}, format="json")
    assert response.status_code == 400 and response.json() == at_creation
    batch = Batch.objects.get(pk=body["id"])
    assert batch.prompt_template == "Say: {{text}}" and batch.temperature is None


def test_editing_a_draft_rebuilds_its_prompts(api, enqueued):
    body = create_draft(api)
    response = api.patch(f"/api/batches/{body['id']}/",
                         {"prompt": "Shout: {{text}}", "model": "gemini-2.5-pro",
                          "system_instruction": "Loud.", "use_cache": False}, format="json")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["prompt"] == "Shout: {{text}}" and data["model"] == "gemini-2.5-pro"
    assert data["use_cache"] is False
    assert BatchResult.objects.get(batch_id=body["id"], index=3).prompt == "Shout: t3"


def test_a_started_batch_cannot_change_its_prompt(api, enqueued):
    body = api.post("/api/batches/", {"prompt": "Say: {{text}}", "rows": ROWS},
                    format="json").json()
    response = api.patch(f"/api/batches/{body['id']}/", {"prompt": "x {{text}}"},
                         format="json")
    assert response.status_code == 409
    assert api.patch(f"/api/batches/{body['id']}/", {"name": "ok"},
                     format="json").status_code == 200


def test_a_new_version_copies_the_rows_into_a_linked_draft(api, user, enqueued):
    parent = orm_batch(user, ROWS, status="completed", statuses=["succeeded"] * 6,
                       outputs=[f"out {i}" for i in range(6)], name="Reviews")
    response = api.post(f"/api/batches/{parent.pk}/versions/", {}, format="json")
    assert response.status_code == 201
    data = response.json()
    assert data["status"] == "draft" and data["parent"] == parent.pk
    assert data["name"] == "Reviews (v2)" and data["total_rows"] == 6
    assert response["Location"].endswith(f"/api/batches/{data['id']}/")


def test_a_new_version_from_a_corrected_file_checks_the_file(api, user, enqueued):
    parent = orm_batch(user, ROWS, status="completed", statuses=["succeeded"] * 6)
    bad = csv_file("other\nx\n", name="fixed.csv")
    response = api.post(f"/api/batches/{parent.pk}/versions/", {"file": bad},
                        format="multipart")
    assert response.status_code == 400
    assert "{{text}} is not a column of the file" in response.json()["prompt"][0]
    good = csv_file("text\nfixed 0\nfixed 1\n", name="fixed.csv")
    response = api.post(f"/api/batches/{parent.pk}/versions/", {"file": good},
                        format="multipart")
    assert response.status_code == 201 and response.json()["total_rows"] == 2


def test_compare_shows_changed_rows_and_field_counts(api, user):
    a = orm_batch(user, ROWS[:3], status="completed", statuses=["succeeded"] * 3,
                  outputs=['{"label": "pos", "score": 1}', '{"label": "neg", "score": 2}',
                           "same"])
    b = orm_batch(user, ROWS[:3], status="completed", statuses=["succeeded"] * 3,
                  outputs=['{"label": "pos", "score": 1}', '{"label": "pos", "score": 3}',
                           "same"], parent=a)

    data = api.get(f"/api/batches/{b.pk}/compare/").json()
    assert (data["a"], data["b"], data["rows"], data["changed"]) == (a.pk, b.pk, 3, 1)
    assert data["field_changes"] == {"label": 1, "score": 1}
    changed = api.get(f"/api/batches/{b.pk}/compare/?changed=1").json()
    assert [r["index"] for r in changed["results"]] == [1]
    assert changed["results"][0]["changed_fields"] == ["label", "score"]


def test_compare_export_is_one_formula_safe_csv(api, user):
    a = orm_batch(user, [{"text": "=1+1"}], status="completed", statuses=["succeeded"],
                  outputs=["=cmd"])
    b = orm_batch(user, [{"text": "=1+1"}], status="completed", statuses=["succeeded"],
                  outputs=["fine"], parent=a)
    response = api.get(f"/api/batches/{b.pk}/compare/export/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["index", "text", "status_a", "output_a", "status_b", "output_b",
                        "changed", "changed_fields"]
    assert table[1] == ["0", "'=1+1", "succeeded", "'=cmd", "succeeded", "fine", "yes", ""]


def test_comparing_with_another_users_batch_is_404(api, user, other_user):
    mine = orm_batch(user, ROWS[:1])
    theirs = orm_batch(other_user, ROWS[:1])
    assert api.get(f"/api/batches/{mine.pk}/compare/?with={theirs.pk}").status_code == 404
    assert api.get(f"/api/batches/{mine.pk}/compare/export/?with={theirs.pk}"
                   ).status_code == 404
    assert api.get(f"/api/batches/{mine.pk}/compare/").status_code == 400  # no parent


def test_staff_may_compare_any_batches(staff_user, user, other_user):
    a, b = orm_batch(user, ROWS[:1]), orm_batch(other_user, ROWS[:1])
    response = client_for(staff_user).get(f"/api/batches/{b.pk}/compare/?with={a.pk}")
    assert response.status_code == 200


def test_rerun_chosen_rows_includes_succeeded_ones_and_bypasses_the_cache(api, user, enqueued):
    batch = orm_batch(user, ROWS[:3], status="completed", statuses=["succeeded"] * 3,
                      outputs=["a", "b", "c"], started_at=timezone.now())
    batch.refresh_counts()
    response = api.post(f"/api/batches/{batch.pk}/results/retry/", {"indexes": [0, 2]},
                        format="json")
    assert response.status_code == 200 and response.json()["status"] == "running"
    rows = {r.index: r for r in batch.results.all()}
    assert rows[0].status == rows[2].status == "pending" and rows[1].status == "succeeded"
    assert rows[0].bypass_cache and rows[0].output == ""
    assert enqueued == [batch.pk]


@pytest.mark.parametrize("body,field", [
    ({"indexes": []}, "indexes"), ({"indexes": [9]}, "indexes"), ({"indexes": ["x"]}, "indexes"),
    ({}, "indexes"),
])
def test_rerun_refuses_bad_indexes_and_changes_nothing(api, user, body, field, enqueued):
    batch = orm_batch(user, ROWS[:3], status="completed", statuses=["succeeded"] * 3)
    response = api.post(f"/api/batches/{batch.pk}/results/retry/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert batch.results.filter(status="succeeded").count() == 3 and enqueued == []


def test_the_batch_reports_rows_from_the_cache(api, user):
    batch = orm_batch(user, ROWS[:3], status="completed", statuses=["succeeded"] * 3)
    BatchResult.objects.filter(batch=batch, index__lt=2).update(cached=True)
    batch.refresh_counts()
    data = api.get(f"/api/batches/{batch.pk}/").json()
    assert data["from_cache"] == {"rows": 2, "prompt_tokens_saved": 6, "output_tokens_saved": 10}
    results = api.get(f"/api/batches/{batch.pk}/results/").json()["results"]
    assert [r["cached"] for r in results] == [True, True, False]
