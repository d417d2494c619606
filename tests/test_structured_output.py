"""Structured output as a user meets it: the page, the API, the CLI and the exports."""

import csv
import datetime
import io
import json
import re
from pathlib import Path

import openpyxl
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from batches import outputs
from batches.fake_gemini.structured import structured_answer
from batches.models import Batch
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

REVIEWS = Path(__file__).resolve().parent.parent / "batches" / "demo" / "reviews.csv"
PROMPT = "Classify this review of {{product}}: {{review}}"
HX = {"HTTP_HX_REQUEST": "true"}
EDITOR = {
    "output_mode": "columns",
    "field_name": ["sentiment", "score", "reasons"],
    "field_type": ["enum", "integer", "list"],
    "field_values": ["positive, mixed, negative", "", ""],
    "field_description": ["", "1 to 5", "why, in a few words"],
    "field_required": ["required", "required", "optional"],
}
API_FIELDS = [
    {"name": "sentiment", "type": "enum", "values": ["positive", "mixed", "negative"]},
    {"name": "score", "type": "integer"},
    {"name": "reasons", "type": "list"},
]


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def xlsx_rows(content: bytes) -> list[tuple]:
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    return list(sheet.iter_rows(values_only=True))


@pytest.mark.django_db(transaction=True)
def test_a_new_user_runs_columns_from_the_page_and_gets_typed_columns_back(
        client, user, fake, enqueued):
    client.force_login(user)
    page = client.get(reverse("batch_new")).content.decode()
    assert "Advanced: JSON Schema" in page and 'name="field_name"' in page

    with REVIEWS.open("rb") as f:
        response = client.post(reverse("batch_new"), {
            "file": f, "prompt": PROMPT, "model": "gemini-2.5-flash", "concurrency": 4,
            "max_retries": 3, "priority": 1, **EDITOR})
    assert response.status_code == 302, response.content.decode()[:3000]
    batch = Batch.objects.get()
    assert [f.name for f in batch.output_fields] == ["sentiment", "score", "reasons"]
    run_until_done(batch)

    detail = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    for name in ("sentiment", "score", "reasons"):
        assert f'<th scope="col" class="answer-head">{name}</th>' in detail
        assert f'id="summary-{name}"' in detail
    assert "median" in detail
    first = batch.results.get(index=0)
    assert first.data == structured_answer(batch.response_schema, first.prompt)
    assert (f'data-label="score"><div class="output-full">{first.data["score"]}</div>'
            in detail)

    export = client.get(f"/api/batches/{batch.pk}/export/?format=xlsx")
    rows = xlsx_rows(b"".join(export.streaming_content))
    assert rows[0] == ("row", "product", "rating", "review", "sentiment", "score", "reasons",
                       "status", "error")
    scores = [row[5] for row in rows[1:]]
    assert len(scores) == 20 and all(isinstance(s, int) for s in scores)
    assert rows[1][6] == "; ".join(first.data["reasons"])


def test_the_preview_shows_the_columns_and_the_toggle_shows_the_schema_the_editor_builds(
        client, user):
    client.force_login(user)
    upload = io.BytesIO(b"product,review\np,r\n")
    upload.name = "reviews.csv"
    preview = client.post(reverse("batch_new_preview"), {
        "prompt": "{{review}}", "file": upload, **EDITOR}, **HX).content.decode()
    assert 'id="preview-output"' in preview
    assert "<code>sentiment</code>" in preview and "one of (positive, mixed, negative)" in preview
    staged = re.search(r'name="staged_upload" value="([^"]+)"', preview).group(1)

    clash = client.post(reverse("batch_new_preview"), {
        "staged_upload": staged, **{**EDITOR, "field_name": ["review", "score", "reasons"]}},
        **HX).content.decode()
    assert "the output field &#x27;review&#x27; has the name of an input column" in clash

    box = client.post(reverse("batch_new_schema"), EDITOR, **HX).content.decode()
    schema = json.loads(box.split(">", 2)[1].split("</textarea")[0].replace("&quot;", '"'))
    assert schema["properties"]["sentiment"]["enum"] == ["positive", "mixed", "negative"]
    assert schema["required"] == ["sentiment", "score"]


def test_a_hand_written_schema_from_the_advanced_box_is_used_and_a_bad_one_changes_nothing(
        client, user, enqueued):
    client.force_login(user)
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]},
                                               "when": {"type": "string", "format": "date"}}}
    form = {"prompt": "{{review}}", "model": "gemini-2.5-flash", "concurrency": 4,
            "max_retries": 3, "priority": 1, "output_mode": "columns", "output_advanced": "on"}
    with REVIEWS.open("rb") as f:
        bad = client.post(reverse("batch_new"), {**form, "file": f,
                                                 "output_schema": '{"type": "object", '
                                                 '"properties": {"x": {"type": "int"}}}'})
    assert bad.status_code == 200 and not Batch.objects.exists()
    assert "response_schema.properties.x.type: unknown type &#x27;int&#x27;" in (
        bad.content.decode())
    with REVIEWS.open("rb") as f:
        client.post(reverse("batch_new"), {**form, "file": f, "output_schema": json.dumps(schema)})
    stored = Batch.objects.get().response_schema
    assert stored == {**schema, "propertyOrdering": ["label", "when"]}
    assert [f.kind for f in Batch.objects.get().output_fields] == ["enum", "date"]


@pytest.mark.django_db(transaction=True)
def test_the_api_takes_output_fields_and_returns_data_filtered_by_fields(api, fake, enqueued):
    created = api.post("/api/batches/", {
        "prompt": "Classify: {{text}}", "rows": [{"text": f"review {i}"} for i in range(5)],
        "output_fields": API_FIELDS}, format="json")
    assert created.status_code == 201, created.json()
    assert [f["name"] for f in created.json()["output_fields"]] == ["sentiment", "score",
                                                                    "reasons"]
    batch = Batch.objects.get()
    run_until_done(batch)

    rows = api.get(f"/api/batches/{batch.pk}/results/").json()["results"]
    assert [r["data"] for r in rows] == [
        structured_answer(batch.response_schema, f"Classify: review {i}") for i in range(5)]
    some = api.get(f"/api/batches/{batch.pk}/results/?fields=sentiment,score").json()["results"]
    assert all(set(r["data"]) == {"sentiment", "score"} for r in some)
    unknown = api.get(f"/api/batches/{batch.pk}/results/?fields=mood")
    assert unknown.status_code == 400
    assert "Unknown output field 'mood'" in unknown.json()["fields"][0]

    lines = b"".join(api.get(f"/api/batches/{batch.pk}/export/?format=jsonl")
                     .streaming_content).decode().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"row", "index", "input", "data", "status", "error"}
    assert first["data"] == rows[0]["data"] and first["input"] == {"text": "review 0"}

    refused = api.patch(f"/api/batches/{batch.pk}/", {"output_fields": API_FIELDS[:1]},
                        format="json")
    assert refused.status_code == 409
    assert "cannot change once rows have run" in refused.json()["detail"]


def test_api_errors_name_the_field_path_and_create_nothing(api):
    bad_type = api.post("/api/batches/", {
        "prompt": "{{text}}", "rows": [{"text": "a"}],
        "output_fields": [{"name": "a"}, {"name": "b"}, {"name": "c", "type": "colour"}]},
        format="json")
    assert bad_type.status_code == 400
    assert bad_type.json()["output_fields"][0].startswith(
        "output_fields[2].type: unknown type 'colour'")
    deep = {"type": "object", "properties": {"a": {"type": "string", "enum": []}}}
    bad_schema = api.post("/api/batches/", {"prompt": "{{text}}", "rows": [{"text": "a"}],
                                            "response_schema": deep}, format="json")
    assert bad_schema.json()["response_schema"] == [
        "response_schema.properties.a.enum: an enum needs at least one value"]
    assert not Batch.objects.exists()


def test_the_output_may_change_by_patch_until_rows_run(api, enqueued):
    created = api.post("/api/batches/", {"prompt": "{{text}}", "rows": [{"text": "a"}]},
                       format="json").json()
    assert created["output_fields"] == [] and created["response_schema"] is None
    changed = api.patch(f"/api/batches/{created['id']}/", {"output_fields": API_FIELDS},
                        format="json")
    assert changed.status_code == 200
    assert [f["name"] for f in changed.json()["output_fields"]] == ["sentiment", "score",
                                                                    "reasons"]
    text_again = api.patch(f"/api/batches/{created['id']}/",
                           {"output_fields": None, "response_schema": None}, format="json")
    assert text_again.json()["output_fields"] == []
    assert Batch.objects.get().response_schema is None


@pytest.mark.django_db(transaction=True)
def test_the_cli_takes_fields_and_csv_export_has_one_column_per_field(
        user, fake, enqueued, capsys):
    user.is_superuser = True
    user.save()
    call_command("batch_run", str(REVIEWS), "--prompt", PROMPT,
                 "--field", "sentiment:enum(positive,mixed,negative)",
                 "--field", "score:integer:1 to 5", "--field", "reviewed_on?:date")
    batch = Batch.objects.get()
    assert batch.response_schema["properties"]["score"] == {
        "type": "integer", "minimum": 1, "maximum": 5, "description": "1 to 5"}
    run_until_done(batch)
    call_command("batch_status", str(batch.pk))
    assert ("Output:    columns sentiment (one of (positive, mixed, negative)), "
            "score (integer (1 to 5)), reviewed_on (date)") in capsys.readouterr().out

    client = APIClient()
    client.force_authenticate(user)
    text = b"".join(client.get(f"/api/batches/{batch.pk}/export/?format=csv")
                    .streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["row", "product", "rating", "review", "sentiment", "score",
                       "reviewed_on", "status", "error"]
    first = batch.results.get(index=0).data
    assert rows[1][4:7] == [first["sentiment"], str(first["score"]), first["reviewed_on"]]
    datetime.date.fromisoformat(rows[1][6])
    sheet = xlsx_rows(b"".join(client.get(f"/api/batches/{batch.pk}/export/?format=xlsx")
                               .streaming_content))
    assert isinstance(sheet[1][5], int)
    assert sheet[1][6] == datetime.datetime.fromisoformat(first["reviewed_on"])


def test_the_cli_refuses_a_bad_field_or_schema_naming_it(user, tmp_path):
    user.is_superuser = True
    user.save()
    with pytest.raises(CommandError, match=r"--field: output_fields\[0\]\.type: unknown type"):
        call_command("batch_run", str(REVIEWS), "--prompt", PROMPT, "--field", "x:colour")
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"a": {"type": "string"}, "a": {}}}')
    with pytest.raises(CommandError, match="the name 'a' appears twice"):
        call_command("batch_run", str(REVIEWS), "--prompt", PROMPT, "--schema", str(schema))
    assert not Batch.objects.exists()


def test_exports_type_every_kind_of_cell_and_keep_status_filters(user, client):
    from tests.helpers.api import orm_batch

    schema = {"type": "object", "properties": {
        "ok": {"type": "boolean"}, "n": {"type": "number"}, "on": {"type": "string",
                                                                   "format": "date"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "extra": {"type": "object", "properties": {"a": {"type": "integer"}}},
        "note": {"type": "string"}}}
    # Stored as batch_create stores it: checked, with propertyOrdering for the column order.
    batch = orm_batch(user, [{"text": "a"}, {"text": "b"}], statuses=["succeeded", "failed"],
                      response_schema=outputs.check_schema(schema))
    batch.results.filter(index=0).update(data={
        "ok": True, "n": 2.5, "on": "2024-05-06", "tags": ["x", "y"], "extra": {"a": 1},
        "note": "=SUM(A1)"})
    client.force_login(user)

    def export(fmt: str, query: str = "") -> bytes:
        response = client.get(f"/api/batches/{batch.pk}/export/?format={fmt}{query}")
        return b"".join(response.streaming_content)

    sheet = xlsx_rows(export("xlsx"))
    assert sheet[0] == ("row", "text", "ok", "n", "on", "tags", "extra", "note", "status",
                        "error")
    # Text is a string cell as it was (never a formula); the CSV gets the ' prefix instead.
    assert sheet[1] == (1, "a", True, 2.5, datetime.datetime(2024, 5, 6), "x; y", '{"a": 1}',
                        "=SUM(A1)", "succeeded", None)
    assert sheet[2][-2:] == ("failed", "boom")
    rows = list(csv.reader(io.StringIO(export("csv", "&status=failed").decode("utf-8-sig"))))
    assert rows == [list(sheet[0]), ["2", "b", "", "", "", "", "", "", "failed", "boom"]]

    fragment = client.get(reverse("batch_detail", args=[batch.pk]) + "?status=failed",
                          **HX).content.decode()
    assert ">tags</th>" in fragment and 'id="row-1"' in fragment and 'id="row-0"' not in fragment
