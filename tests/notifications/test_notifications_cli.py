"""`manage.py batch_run --webhook URL`."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from batches.models import Batch


@pytest.fixture
def rows_csv(tmp_path, django_user_model):
    django_user_model.objects.create_superuser("root", password=None)
    path = tmp_path / "reviews.csv"
    path.write_text("text\ngreat\nawful\n", encoding="utf-8")
    return path


def test_batch_run_sets_the_batchs_webhook(rows_csv):
    call_command("batch_run", str(rows_csv), "--prompt", "Rate {{text}}", "--webhook",
                 "https://example.com/hook", stdout=io.StringIO())
    assert Batch.objects.get().webhook_url == "https://example.com/hook"


def test_batch_run_names_the_option_of_a_refused_webhook(rows_csv):
    with pytest.raises(CommandError) as err:
        call_command("batch_run", str(rows_csv), "--prompt", "Rate {{text}}", "--webhook",
                     "http://169.254.169.254/latest", stdout=io.StringIO())
    assert str(err.value).startswith("--webhook: 169.254.169.254 resolves to 169.254.169.254")
    assert not Batch.objects.exists()
