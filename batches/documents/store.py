"""Documents in Django's storage (`default_storage`): staged while a batch is created or grows,
removed again if that fails, and removed when their BatchDocument row is deleted (a batch's
delete cascades to them, from any entry point, admin included)."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from batches.documents.kinds import DocumentError, identify
from batches.models import Batch, BatchDocument

log = logging.getLogger(__name__)
FOLDER = "documents"


@dataclass
class StagedFile:
    """One uploaded file; duplicates (same bytes) share the first one's stored copy."""

    name: str
    sha256: str
    size: int
    mime_type: str
    pages: int | None
    path: str = ""
    duplicate_of: str = ""  # the name the same bytes first arrived under

    def row_input(self) -> dict:
        return {"filename": self.name, "size": self.size, "sha256": self.sha256,
                "mime_type": self.mime_type, "pages": self.pages}


DOCUMENT_COLUMNS = ["filename", "size", "sha256", "mime_type", "pages"]


class Staging:
    """Checks and stores files one by one; `discard()` (or leaving the `with` block on an
    error) deletes every file it stored, so a failed creation leaves nothing behind."""

    def __init__(self, existing: list[BatchDocument] | None = None) -> None:
        self.files: list[StagedFile] = []
        self._saved: list[str] = []
        self._prefix = uuid.uuid4().hex
        self._by_sha: dict[str, StagedFile] = {}
        self._existing = {doc.sha256: doc for doc in existing or []}

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    def add(self, name: str, data: bytes) -> StagedFile:
        kind = identify(name, data)
        sha = hashlib.sha256(data).hexdigest()
        staged = StagedFile(name=name, sha256=sha, size=len(data), mime_type=kind.mime_type,
                            pages=kind.pages)
        first = self._by_sha.get(sha)
        if first is not None:
            staged.path, staged.duplicate_of = first.path, first.name
        elif sha in self._existing:
            doc = self._existing[sha]
            staged.path, staged.duplicate_of = doc.path, doc.name
            self._by_sha[sha] = staged
        else:
            staged.path = self._save(sha, data)
            self._by_sha[sha] = staged
        self.files.append(staged)
        return staged

    def _save(self, sha: str, data: bytes) -> str:
        try:
            path = default_storage.save(f"{FOLDER}/{self._prefix}/{sha}", ContentFile(data))
        except Exception as err:  # any backend's failure: the user gets a message, not a 500
            log.exception("Storing a document failed")
            raise DocumentError(f"The file could not be stored ({type(err).__name__}); try "
                                "again later.") from None
        self._saved.append(path)
        return path

    @property
    def duplicates(self) -> list[StagedFile]:
        return [f for f in self.files if f.duplicate_of]

    def records(self, batch: Batch) -> dict[str, int]:
        """Create the BatchDocuments of the new contents; sha256 -> id for every file."""
        ids = {sha: doc.pk for sha, doc in self._existing.items()}
        new = [
            BatchDocument(batch=batch, name=f.name[:255], path=f.path, sha256=f.sha256,
                          size=f.size, mime_type=f.mime_type, pages=f.pages)
            for f in self._by_sha.values() if f.sha256 not in ids
        ]
        for doc in BatchDocument.objects.bulk_create(new):
            ids[doc.sha256] = doc.pk
        if any(doc.pk is None for doc in new):  # backends without RETURNING
            ids.update(BatchDocument.objects.filter(batch=batch)
                       .values_list("sha256", "pk"))
        return ids

    def discard(self) -> None:
        for path in self._saved:
            delete_quietly(path)
        self._saved.clear()


def delete_quietly(path: str) -> None:
    try:
        default_storage.delete(path)
    except Exception:  # a file left behind is logged, never a failed delete of the batch
        log.exception("Could not delete %s from storage", path)


def read_bytes(path: str) -> bytes:
    with default_storage.open(path, "rb") as f:
        return f.read()


@receiver(post_delete, sender=BatchDocument, dispatch_uid="batches.documents.delete_file")
def _delete_file(sender, instance: BatchDocument, **kwargs) -> None:
    path = instance.path
    # After commit: a delete that rolls back keeps its files.
    transaction.on_commit(lambda: delete_quietly(path))
