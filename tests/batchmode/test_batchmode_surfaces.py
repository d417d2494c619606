"""Batch mode where users meet it: the new-batch page, the API, the CLI, the batch page and the
admin; ownership of the jobs follows the batch's."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import call_command
from django.utils import timezone

from batches import cli
from batches.models import Batch, ProviderJob
from tests.helpers.api import orm_batch

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_tasks(monkeypatch):
    monkeypatch.setattr("batches.engine.tasks.enqueue_batch", lambda batch_id: None)


def job(batch: Batch, state: str = "JOB_STATE_PENDING", **fields) -> ProviderJob:
    return ProviderJob.objects.create(batch=batch, claim_token=uuid.uuid4(), name="batches/abc",
                                      state=state, row_count=2, submitted_at=timezone.now(),
                                      **fields)


def test_the_api_creates_a_batch_mode_batch_and_shows_its_jobs(client, user):
    client.force_login(user)
    response = client.post("/api/batches/", {"prompt": "Say {{t}}", "rows": [{"t": "a"}],
                                             "mode": "batch", "fallback_online": False},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    batch = Batch.objects.get()
    assert (batch.mode, batch.fallback_online) == ("batch", False)
    job(batch)
    data = client.get(f"/api/batches/{batch.pk}/").json()
    assert data["mode"] == "batch" and data["fallback_online"] is False
    assert [(j["name"], j["state"], j["row_count"]) for j in data["jobs"]] == [
        ("batches/abc", "PENDING", 2)]


def test_the_api_refuses_an_unknown_mode_naming_the_field(client, user):
    client.force_login(user)
    response = client.post("/api/batches/", {"prompt": "Say {{t}}", "rows": [{"t": "a"}],
                                             "mode": "cheap"}, content_type="application/json")
    assert response.status_code == 400 and "mode" in response.json()
    assert not Batch.objects.exists()


def test_another_users_batch_and_its_jobs_are_404(client, user, other_user):
    batch = orm_batch(other_user, [{"t": "a"}], mode="batch")
    job(batch)
    client.force_login(user)
    assert client.get(f"/api/batches/{batch.pk}/").status_code == 404
    assert client.get(f"/batches/{batch.pk}/").status_code == 404


def test_the_batch_page_shows_the_mode_and_each_job(client, user):
    batch = orm_batch(user, [{"t": "a"}, {"t": "b"}], mode="batch", status="running")
    job(batch)
    client.force_login(user)
    page = client.get(f"/batches/{batch.pk}/").content.decode()
    assert "submitted to Gemini batch mode, 1 job, PENDING" in page
    assert "batches/abc" in page and 'id="provider-jobs"' in page
    ProviderJob.objects.update(state="JOB_STATE_RUNNING")
    fragment = client.get(f"/batches/{batch.pk}/progress/", HTTP_HX_REQUEST="true")
    assert "submitted to Gemini batch mode, 1 job, RUNNING" in fragment.content.decode()


def test_the_new_batch_page_offers_the_mode_and_creates_a_batch_mode_batch(client, user):
    client.force_login(user)
    page = client.get("/batches/new/").content.decode()
    assert "Batch mode: half price, results usually within hours" in page
    upload = io.BytesIO(b"t\na\n")
    upload.name = "rows.csv"
    response = client.post("/batches/new/", {
        "file": upload, "prompt": "Say {{t}}", "model": "gemini-2.5-flash", "concurrency": "4",
        "max_retries": "2", "priority": "1", "name": "", "system_instruction": "",
        "temperature": "", "max_output_tokens": "", "conversation_column": "", "sheet": "",
        "mode": "batch", "fallback_online": "on"})
    batch = Batch.objects.get()
    assert response.status_code == 302, response.content.decode()[:2000]
    assert (batch.mode, batch.fallback_online) == ("batch", True)


def test_batch_run_takes_mode_batch_and_batch_status_says_the_mode(user, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("t\na\nb\n")
    call_command("batch_run", str(path), "--prompt", "Say {{t}}", "--owner", user.username,
                 "--mode", "batch", "--no-fallback-online", stdout=io.StringIO())
    batch = Batch.objects.get()
    assert (batch.mode, batch.fallback_online) == ("batch", False)
    job(batch, "JOB_STATE_SUCCEEDED", finished_at=timezone.now())
    assert "Mode:      Gemini batch mode (half price), 1 job" in cli.figures(batch)


def test_the_admin_lists_provider_jobs(client, staff_user, user):
    staff_user.is_superuser = True
    staff_user.save()
    batch = orm_batch(user, [{"t": "a"}], mode="batch")
    job(batch)
    client.force_login(staff_user)
    assert "batches/abc" in client.get("/admin/batches/providerjob/").content.decode()
    assert "batches/abc" in client.get(
        f"/admin/batches/batch/{batch.pk}/change/").content.decode()
