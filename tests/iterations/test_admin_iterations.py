"""Admin actions for iterating: re-run chosen rows (bypassing the cache) and start drafts."""

from __future__ import annotations

import pytest

from batches.models import Batch
from tests.test_admin import BATCHES_URL, RESULTS_URL, run_action, set_status, statuses

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password=None))
    return client


def test_rerun_rows_runs_succeeded_rows_again_without_the_cache(
        operator, make_batch, django_capture_on_commit_callbacks):
    batch = make_batch(rows=[{"text": str(i)} for i in range(4)])
    set_status(batch, [0, 1], "succeeded", output="old")
    set_status(batch, [2], "running")
    batch.results.filter(index=0).update(cached=True)
    selected = batch.results.filter(index__in=[0, 2]).values_list("pk", flat=True)

    msgs = run_action(operator, RESULTS_URL, "rerun_rows", selected,
                      django_capture_on_commit_callbacks)

    assert statuses(batch) == ["pending", "succeeded", "running", "pending"]
    row = batch.results.get(index=0)
    assert row.bypass_cache and not row.cached and row.output == ""
    assert msgs == ["Running 1 row again. Skipped 1 row still running or in a draft."]


def test_start_drafts_starts_drafts_and_says_why_others_were_skipped(
        operator, make_batch, django_capture_on_commit_callbacks):
    draft = make_batch(start=False)
    running = make_batch()
    msgs = run_action(operator, BATCHES_URL, "_start_draft", [draft.pk, running.pk],
                      django_capture_on_commit_callbacks)
    assert Batch.objects.get(pk=draft.pk).status == "pending"
    assert any("Only a draft can be started" in m for m in msgs)
    assert any(m.startswith("Started 1 batch: 3 rows") for m in msgs)


def test_cache_entries_are_listed_and_can_be_deleted_but_not_edited(operator, user):
    from batches import resultcache
    from batches.models import CachedAnswer
    from batches.providers import Request, Response

    key = resultcache.cache_key(user.pk, Request(model="m", prompt="p"))
    resultcache.store([resultcache.Entry(user.pk, key, "m", Response("answer", "STOP", 1, 2,
                                                                      "v"))])
    entry = CachedAnswer.objects.get()
    listing = operator.get("/admin/batches/cachedanswer/").content.decode()
    assert key in listing
    change = operator.post(f"/admin/batches/cachedanswer/{entry.pk}/change/", {"output": "x"})
    assert change.status_code in (302, 403) and CachedAnswer.objects.get().output == "answer"
    operator.post(f"/admin/batches/cachedanswer/{entry.pk}/delete/", {"post": "yes"})
    assert not CachedAnswer.objects.exists()
