"""Staged uploads: the new-batch page keeps the chosen file in Django's storage between the preview
and Create, so a re-rendered preview or a refused submit does not lose it. A staged file belongs
to the user who uploaded it (anyone else's token finds nothing) and expires."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.text import get_valid_filename

from batches.models import StagedUpload


def stage(owner, file: IO[bytes], filename: str) -> StagedUpload:
    """Store an uploaded file for `owner`; expired staged files of anyone are cleared first."""
    purge_expired()
    token = uuid.uuid4()
    safe = get_valid_filename(filename.rsplit("/", 1)[-1])[:100] or "upload"
    file.seek(0)
    name = default_storage.save(f"staged/{token}/{safe}", file)
    now = timezone.now()
    return StagedUpload.objects.create(
        token=token, owner=owner, filename=filename[:255], storage_name=name,
        size=default_storage.size(name), created_at=now,
        expires_at=now + timedelta(hours=settings.BATCH_STAGED_UPLOAD_HOURS or 24),
    )


def find(owner, token: str) -> StagedUpload | None:
    """The owner's unexpired staged upload with this token, or None."""
    try:
        key = uuid.UUID(str(token))
    except ValueError:
        return None
    return StagedUpload.objects.filter(token=key, owner=owner,
                                       expires_at__gt=timezone.now()).first()


def open_staged(staged: StagedUpload) -> IO[bytes]:
    return default_storage.open(staged.storage_name, "rb")


def discard(staged: StagedUpload) -> None:
    default_storage.delete(staged.storage_name)
    staged.delete()


def purge_expired() -> int:
    expired = list(StagedUpload.objects.filter(expires_at__lte=timezone.now()))
    for staged in expired:
        discard(staged)
    return len(expired)
