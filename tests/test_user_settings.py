"""Per-user settings: the page and /api/me/settings/, and new batches that start from them."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from batches import iterations
from batches.models import Batch, UserSettings
from tests.helpers import engine as engine_helpers

enqueued = engine_helpers.enqueued

URL = "/api/me/settings/"
ROWS = {"prompt": "Describe {{a}}", "rows": [{"a": "x"}]}


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_get_answers_the_server_defaults_until_the_user_saves_some(api):
    assert api.get(URL).json() == {
        "model": "", "system_instruction": "", "language": "", "concurrency": None,
        "thinking": "", "apply_overrides": False, "updated_at": None}


@pytest.mark.django_db
def test_new_api_batches_start_from_the_settings_and_record_what_they_used(api, enqueued):
    saved = api.put(URL, {"model": "gemini-2.5-pro", "system_instruction": "Be terse.",
                          "language": "de", "concurrency": 7, "thinking": "2048"},
                    format="json")
    assert saved.status_code == 200 and saved.json()["thinking"] == "2048"
    batch = api.post("/api/batches/", ROWS, format="json").json()
    assert (batch["model"], batch["system_instruction"], batch["language"],
            batch["concurrency"], batch["thinking"]) == (
        "gemini-2.5-pro", "Be terse.", "de", 7, "2048")
    # What the request gives wins over the settings.
    given = api.post("/api/batches/", {**ROWS, "system_instruction": "Be long.", "language": "",
                                       "concurrency": 3, "thinking": "off",
                                       "model": "gemini-2.5-flash"}, format="json").json()
    assert (given["model"], given["system_instruction"], given["language"],
            given["concurrency"], given["thinking"]) == (
        "gemini-2.5-flash", "Be long.", "", 3, "off")


@pytest.mark.django_db
def test_always_apply_puts_my_instruction_first_once_also_in_new_versions(api, user, enqueued):
    api.patch(URL, {"system_instruction": "House style: British English.",
                    "apply_overrides": True}, format="json")
    own = api.post("/api/batches/", {**ROWS, "system_instruction": "List three facts."},
                   format="json").json()
    assert own["system_instruction"] == "House style: British English.\n\nList three facts."
    bare = api.post("/api/batches/", {**ROWS, "system_instruction": ""}, format="json").json()
    assert bare["system_instruction"] == "House style: British English."
    version = iterations.batch_new_version(batch=Batch.objects.get(pk=own["id"]), owner=user,
                                           file=io.BytesIO(b"a\ny\n"), filename="v.csv")
    assert version.system_instruction == own["system_instruction"]


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"model": "gpt-nothing"}, "model"),
    ({"language": "xx"}, "language"),
    ({"thinking": "lots"}, "thinking"),
    ({"concurrency": 0}, "concurrency"),
    ({"apply_overrides": "maybe"}, "apply_overrides"),
])
def test_a_bad_setting_is_a_400_naming_the_field_and_saves_nothing(api, user, body, field):
    api.patch(URL, {"language": "fr"}, format="json")
    response = api.patch(URL, {"system_instruction": "changed?", **body}, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert UserSettings.objects.get(user=user).system_instruction == ""


@pytest.mark.django_db
def test_put_replaces_and_patch_changes_only_what_is_sent(api):
    api.put(URL, {"language": "fr", "concurrency": 5}, format="json")
    assert api.patch(URL, {"thinking": "low"}, format="json").json()["language"] == "fr"
    after = api.put(URL, {"thinking": "default"}, format="json").json()
    assert (after["language"], after["concurrency"], after["thinking"]) == ("", None, "default")


@pytest.mark.django_db
def test_each_user_sees_and_changes_only_their_own_settings(api, other_user):
    api.patch(URL, {"system_instruction": "Mine."}, format="json")
    theirs = APIClient()
    theirs.force_authenticate(other_user)
    assert theirs.get(URL).json()["system_instruction"] == ""
    assert APIClient().get(URL).status_code in (401, 403)


@pytest.mark.django_db
def test_a_session_write_without_the_csrf_token_is_refused(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.patch(URL, {"language": "fr"}, format="json").status_code == 403
    assert not UserSettings.objects.exists()


@pytest.mark.django_db
def test_the_settings_page_is_in_the_nav_saves_and_fills_the_new_batch_form(client, user):
    client.force_login(user)
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("user_settings")}"' in dashboard
    response = client.post(reverse("user_settings"), {
        "model": "gemini-2.5-pro", "system_instruction": "<b>Be kind</b>", "language": "es",
        "concurrency": "9", "thinking": "4096"})
    assert response.status_code == 302
    page = client.get(reverse("user_settings")).content.decode()
    assert "&lt;b&gt;Be kind&lt;/b&gt;" in page and "<b>Be kind</b>" not in page
    form = client.get(reverse("batch_new")).content.decode()
    assert '<option value="gemini-2.5-pro" selected>' in form
    assert '<option value="es" selected>' in form and 'value="9"' in form
    assert '<option value="4096" selected>' in form
    assert "&lt;b&gt;Be kind&lt;/b&gt;</textarea>" in form


@pytest.mark.django_db
def test_the_settings_page_shows_a_form_error_and_saves_nothing(client, user):
    client.force_login(user)
    response = client.post(reverse("user_settings"), {"thinking": "a lot", "language": "fr"})
    assert response.status_code == 200 and 'id="id_thinking_error"' in response.content.decode()
    assert not UserSettings.objects.exists()


@pytest.mark.django_db
def test_the_settings_page_refuses_a_post_without_csrf(user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("user_settings"), {"language": "fr"}).status_code == 403


@pytest.mark.django_db
def test_the_cli_starts_from_the_owners_settings(user, tmp_path, enqueued):
    UserSettings.objects.create(user=user, language="it", concurrency=4, thinking="low",
                                system_instruction="Be short.")
    path = tmp_path / "a.csv"
    path.write_text("a\nx\n")
    call_command("batch_run", str(path), "--prompt", "{{a}}", "--owner", user.username,
                 stdout=io.StringIO())
    batch = Batch.objects.get()
    assert (batch.language, batch.concurrency, batch.thinking, batch.system_instruction) == (
        "it", 4, "low", "Be short.")
