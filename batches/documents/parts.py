"""A row's documents -> the attachments of its request: the bytes inline while the request stays
under Gemini's inline limit, otherwise a Files API URI, uploaded once per document and reused
(retries, other rows with the same bytes, other workers) until shortly before it expires.

Runs on a slice's event loop: ORM calls go through the slice's `run_db`, storage reads through
a worker thread, uploads through the provider."""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from batches.documents.store import read_bytes
from batches.models import BatchDocument
from batches.providers.base import Attachment, PermanentError, Provider, RetryableError

MB = 1024 * 1024
# A cached Files API URI is used only while it has at least this long left to live.
FILE_URI_MARGIN = timedelta(hours=1)
# Gemini's own fallback when the Files API does not say: files live 48 hours.
FILE_LIFETIME = timedelta(hours=47)
TOKENS_PER_PAGE = 258  # Gemini counts a PDF page or an image as 258 tokens

RunDb = Callable[[Callable[[], Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Attached:
    parts: tuple[Attachment, ...]
    tokens: int  # an estimate, for the shared tokens-per-minute limiter


async def attachments(document_ids: Sequence[int], *, prompt_bytes: int, provider: Provider,
                      run_db: RunDb) -> Attached:
    if not document_ids:
        return Attached((), 0)
    docs = await run_db(lambda: _load(list(document_ids)))
    budget = settings.GEMINI_INLINE_MAX_MB * MB - prompt_bytes
    inline: set[int] = set()
    for doc in sorted(docs, key=lambda d: d.size):
        encoded = 4 * math.ceil(doc.size / 3)  # base64 in the JSON body
        if encoded <= budget:
            budget -= encoded
            inline.add(doc.pk)
    parts = []
    for doc in docs:
        if doc.pk in inline:
            parts.append(Attachment(doc.mime_type, data=await _read(doc), name=doc.name))
        else:
            uri = await _file_uri(doc, provider, run_db)
            parts.append(Attachment(doc.mime_type, file_uri=uri, name=doc.name))
    return Attached(tuple(parts), sum(_tokens(doc) for doc in docs))


def _load(ids: list[int]) -> list[BatchDocument]:
    found = BatchDocument.objects.in_bulk(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise PermanentError(f"The row's document {missing[0]} no longer exists.")
    return [found[i] for i in ids]


def _tokens(doc: BatchDocument) -> int:
    if doc.mime_type.startswith("text/"):
        return doc.size // 4
    return TOKENS_PER_PAGE * (doc.pages or 1)


async def _read(doc: BatchDocument) -> bytes:
    try:
        data = await asyncio.to_thread(read_bytes, doc.path)
    except FileNotFoundError:
        raise PermanentError(f"The document {doc.name} is missing from storage.") from None
    except Exception as exc:  # an unreachable bucket is worth another try later
        raise RetryableError(f"Reading {doc.name} from storage failed: "
                             f"{type(exc).__name__}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != doc.sha256:
        raise PermanentError(f"The stored copy of {doc.name} has changed (its SHA-256 differs).")
    return data


async def _file_uri(doc: BatchDocument, provider: Provider, run_db: RunDb) -> str:
    now = timezone.now()
    expires = doc.gemini_file_expires_at
    if doc.gemini_file_uri and expires and expires > now + FILE_URI_MARGIN:
        return doc.gemini_file_uri
    uploaded = await provider.upload_file(await _read(doc), mime_type=doc.mime_type,
                                          display_name=doc.name)
    expires_at = uploaded.expires_at or now + FILE_LIFETIME
    await run_db(lambda: BatchDocument.objects.filter(pk=doc.pk).update(
        gemini_file_uri=uploaded.uri, gemini_file_expires_at=expires_at))
    return uploaded.uri


def forget_files(document_ids: Sequence[int]) -> int:
    """Drop cached Files API URIs that Gemini no longer knows, so the retry uploads again."""
    return BatchDocument.objects.filter(pk__in=list(document_ids)).exclude(
        gemini_file_uri="").update(gemini_file_uri="", gemini_file_expires_at=None)
