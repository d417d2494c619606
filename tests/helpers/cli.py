"""Management commands run in-process, and the superuser the CLI tests act as."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", password=None)


def run(*args, stdout=None, **options) -> str:
    """What the command wrote to `stdout` (a fresh buffer unless given); stderr is dropped."""
    out = stdout or io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()
