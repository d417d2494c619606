"""Grounding and language as a new user meets them: the page, the API, the CLI, the exports,
the result cache, through the real google-genai SDK against the fake Gemini server."""

import csv
import io
import json

import openpyxl
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from batches import iterations, languages, services
from batches.models import Batch
from batches.providers import capabilities
from tests.conftest import csv_file
from tests.helpers import engine as engine_helpers
from tests.helpers.engine import run_until_done

fake = engine_helpers.fake
enqueued = engine_helpers.enqueued

COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne",
             "Wonka", "Cyberdyne", "Tyrell", "Soylent", "Aperture", "Black Mesa", "Oscorp",
             "Vandelay", "Monsters Inc", "Dunder Mifflin", "Pied Piper", "Gringotts", "Duff"]
PROMPT = "Where is the headquarters of {{company}}?"


def companies_csv() -> io.BytesIO:
    return csv_file("company\n" + "\n".join(COMPANIES) + "\n", "companies.csv")


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db(transaction=True)
def test_a_new_user_grounds_20_company_names_and_sees_sources_on_the_page_and_in_the_csv(
        client, user, fake, enqueued):
    client.force_login(user)
    page = client.get(reverse("batch_new")).content.decode()
    assert "Ground answers with Google Search" in page and "Read URLs in the prompt" in page
    assert 'data-tool-models="gemini-2.5-flash' in page and "Answer in" in page

    response = client.post(reverse("batch_new"), {
        "file": companies_csv(), "prompt": PROMPT, "model": "gemini-2.5-flash",
        "concurrency": 4, "max_retries": 3, "priority": 1, "thinking": "off",
        "google_search": "on", "language": "fr"})
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = Batch.objects.get()
    assert batch.google_search and not batch.url_context and batch.language == "fr"
    run_until_done(batch)
    assert batch.status == Batch.Status.COMPLETED and batch.succeeded_count == 20

    # The SDK sent the tool and the language line; the fake answered with grounding metadata.
    bodies = [entry.body for entry in fake.stats.log]
    assert all(b["tools"] == [{"googleSearch": {}}] for b in bodies)
    assert all("Write your answer in French." in json.dumps(b["systemInstruction"])
               for b in bodies)
    row = batch.results.get(index=0)
    assert row.sources == [
        {"uri": "https://example.com/search/where-is-the-headquarters-of-acme%3F",
         "title": "example.com"},
        {"uri": "https://example.org/wiki/where-is-the-headquarters-of-acme%3F",
         "title": "example.org"}]
    assert batch.results.filter(sources__isnull=True).count() == 0

    detail = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "Sources (2)" in detail
    assert ('<a href="https://example.com/search/where-is-the-headquarters-of-acme%3F" '
            'rel="noopener noreferrer nofollow"') in detail
    assert "Answer in <strong>French</strong>" in detail and "Grounded with Google Search" in detail

    export = client.get(f"/api/batches/{batch.pk}/export/?format=csv")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert rows[0][-1] == "sources" and len(rows) == 21
    assert rows[1][-1] == ("example.com <https://example.com/search/where-is-the-headquarters-"
                           "of-acme%3F>\nexample.org <https://example.org/wiki/where-is-the-"
                           "headquarters-of-acme%3F>")


@pytest.mark.django_db(transaction=True)
def test_hostile_sources_are_escaped_never_linked_unless_http_and_formula_safe_in_exports(
        client, user, fake, enqueued):
    fake.configure(grounding_sources=[
        {"uri": "https://ok.example/a?b=1&c=2", "title": "=HYPERLINK(\"http://evil\")"},
        {"uri": "javascript:alert(1)", "title": "<script>alert(1)</script>"}])
    batch = Batch.objects.get(pk=_api_batch(user, google_search=True)["id"])
    run_until_done(batch)
    client.force_login(user)
    detail = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "<script>alert(1)</script>" not in detail
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert 'href="javascript:' not in detail
    assert 'href="https://ok.example/a?b=1&amp;c=2"' in detail

    export = client.get(f"/api/batches/{batch.pk}/export/?format=csv")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert rows[1][-1].startswith("'=HYPERLINK")
    xlsx = client.get(f"/api/batches/{batch.pk}/export/?format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(xlsx.streaming_content))).active
    header, first = list(sheet.iter_rows(values_only=True))[:2]
    assert header[-1] == "sources" and "javascript:alert(1)" in first[-1]
    assert sheet.cell(row=2, column=len(header)).data_type == "s"  # a string, never a formula
    jsonl = client.get(f"/api/batches/{batch.pk}/export/?format=jsonl")
    line = json.loads(b"".join(jsonl.streaming_content).splitlines()[0])
    assert line["sources"][0] == {"uri": "https://ok.example/a?b=1&c=2",
                                  "title": "=HYPERLINK(\"http://evil\")"}


def _api_batch(user, **extra):
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/batches/", {
        "prompt": "Where is {{company}}?", "model": "gemini-2.5-flash",
        "rows": [{"company": c} for c in COMPANIES[:3]], **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_the_api_runs_url_context_and_returns_sources_per_row(api, user, fake, enqueued):
    created = api.post("/api/batches/", {
        "prompt": "Summarise {{url}}", "model": "gemini-2.5-flash", "url_context": True,
        "rows": [{"url": "https://docs.example/page-1"}]}, format="json").json()
    assert created["url_context"] is True and created["google_search"] is False
    assert created["language"] == ""
    run_until_done(Batch.objects.get(pk=created["id"]))
    results = api.get(f"/api/batches/{created['id']}/results/").json()["results"]
    assert results[0]["sources"] == [{"uri": "https://docs.example/page-1",
                                      "title": "docs.example"}]
    assert fake.stats.log[-1].body["tools"] == [{"urlContext": {}}]


@pytest.mark.django_db(transaction=True)
def test_a_cached_grounded_answer_keeps_its_sources_and_tools_change_the_key(
        user, fake, enqueued):
    first = Batch.objects.get(pk=_api_batch(user, google_search=True)["id"])
    run_until_done(first)
    calls = len(fake.stats.log)
    again = Batch.objects.get(pk=_api_batch(user, google_search=True)["id"])
    run_until_done(again)
    assert len(fake.stats.log) == calls  # every row from the cache
    assert again.cached_count == 3
    assert [r.sources for r in again.results.order_by("index")] == [
        r.sources for r in first.results.order_by("index")]
    plain = Batch.objects.get(pk=_api_batch(user)["id"])
    run_until_done(plain)
    assert len(fake.stats.log) == calls + 3  # without the tool it is another question
    assert not plain.results.exclude(sources=None).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"google_search": True, "model": "gemini-1.5-flash"}, "google_search"),
    ({"url_context": True, "model": "gemini-1.5-flash"}, "url_context"),
    ({"language": "xx"}, "language"),
    ({"language": 7}, "language"),
])
def test_bad_grounding_or_language_is_a_400_naming_the_field_and_creates_nothing(
        api, settings, enqueued, body, field):
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-1.5-flash"]
    response = api.post("/api/batches/", {"prompt": "{{a}}", "rows": [{"a": "x"}], **body},
                        format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_the_page_shows_a_form_error_for_grounding_on_a_model_without_the_tool(
        client, user, settings, enqueued):
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-1.5-flash"]
    client.force_login(user)
    page = client.get(reverse("batch_new")).content.decode()
    assert "gemini-1.5-flash" not in page.split('data-tool-models="', 1)[1].split('"', 1)[0]
    response = client.post(reverse("batch_new"), {
        "file": companies_csv(), "prompt": PROMPT, "model": "gemini-1.5-flash",
        "concurrency": 4, "max_retries": 3, "priority": 1, "google_search": "on"})
    assert response.status_code == 200 and not Batch.objects.exists()
    assert "gemini-1.5-flash cannot use “Ground answers with Google Search”" in (
        response.content.decode())
    bad_language = client.post(reverse("batch_new"), {
        "file": companies_csv(), "prompt": PROMPT, "model": "gemini-2.5-flash",
        "concurrency": 4, "max_retries": 3, "priority": 1, "language": "xx"})
    assert bad_language.status_code == 200 and not Batch.objects.exists()
    assert 'id="id_language_error"' in bad_language.content.decode()


@pytest.mark.django_db
def test_the_cli_takes_grounding_and_language_and_refuses_what_the_model_cannot_do(
        user, tmp_path, enqueued, settings):
    user.is_superuser = True
    user.save()
    path = tmp_path / "companies.csv"
    path.write_text("company\nAcme\n")
    call_command("batch_run", str(path), "--prompt", PROMPT, "--google-search",
                 "--url-context", "--language", "de", stdout=io.StringIO())
    batch = Batch.objects.get()
    assert batch.tools == ("google_search", "url_context") and batch.language == "de"
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-1.5-flash"]
    with pytest.raises(CommandError, match="--google-search: gemini-1.5-flash cannot"):
        call_command("batch_run", str(path), "--prompt", PROMPT, "--google-search",
                     "--model", "gemini-1.5-flash", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--language: Unknown language 'klingon'"):
        call_command("batch_run", str(path), "--prompt", PROMPT, "--language", "klingon",
                     stdout=io.StringIO())


@pytest.mark.django_db
def test_a_new_version_copies_grounding_language_and_thinking(user, enqueued):
    batch = Batch.objects.get(pk=_api_batch(user, google_search=True, url_context=True,
                                            language="ja", thinking="low")["id"])
    version = iterations.batch_new_version(batch=batch, owner=user)
    assert (version.google_search, version.url_context, version.language, version.thinking) \
        == (True, True, "ja", "low")


def test_the_capability_table_and_the_language_line():
    assert capabilities.model_tools("gemini-2.5-flash") == {"google_search", "url_context"}
    assert capabilities.model_tools("gemini-2.0-flash") == {"google_search", "url_context"}
    assert capabilities.model_tools("gemini-1.5-pro") == frozenset()
    assert capabilities.model_tools("gpt-4o") == frozenset()
    assert languages.with_language("Be brief.", "fr") == "Be brief.\n\nWrite your answer in French."
    assert languages.with_language("", "") == ""
    with pytest.raises(languages.UnknownLanguage):
        languages.parse("xx")


@pytest.mark.django_db
def test_a_grounded_draft_cannot_switch_to_a_model_without_the_tool(user, settings, enqueued):
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-1.5-flash"]
    draft = Batch.objects.get(pk=_api_batch(user, google_search=True, start=False)["id"])
    with pytest.raises(services.InvalidInput) as refused:
        iterations.batch_edit_draft(batch=draft, model="gemini-1.5-flash")
    assert refused.value.field == "google_search"
    draft.refresh_from_db()
    assert draft.model_name == "gemini-2.5-flash"


@pytest.mark.django_db
def test_grounding_with_columns_output_needs_a_model_that_combines_them(api, settings, user,
                                                                         enqueued):
    fields = [{"name": "city", "type": "text"}]
    refused = api.post("/api/batches/", {"prompt": "{{a}}", "rows": [{"a": "x"}],
                                         "google_search": True, "output_fields": fields},
                       format="json")
    assert refused.status_code == 400 and "columns output" in refused.json()["google_search"][0]
    assert not Batch.objects.exists()
    settings.GEMINI_MODELS = [*settings.GEMINI_MODELS, "gemini-3-flash-preview"]
    allowed = api.post("/api/batches/", {"prompt": "{{a}}", "rows": [{"a": "x"}],
                                         "model": "gemini-3-flash-preview",
                                         "google_search": True, "output_fields": fields},
                       format="json")
    assert allowed.status_code == 201, allowed.content
    draft = Batch.objects.get(pk=_api_batch(user, url_context=True, start=False)["id"])
    with pytest.raises(services.InvalidInput, match="columns output"):
        iterations.batch_edit_draft(batch=draft, output_fields=fields)
