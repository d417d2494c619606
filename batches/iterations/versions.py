"""New versions: a draft made from a batch's rows (or a corrected file), linked by `parent`."""

from __future__ import annotations

import re
from typing import IO

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from batches import documents, row_insert, services
from batches.models import Batch, BatchDocument

COPY_CHUNK = 2000
_VERSION_SUFFIX = re.compile(r"\s+\(v(\d+)\)$")


def version_name(parent: Batch) -> str:
    """"Reviews" -> "Reviews (v2)" -> "Reviews (v3)"."""
    base = parent.display_name
    match = _VERSION_SUFFIX.search(base)
    number = int(match.group(1)) + 1 if match else 2
    stem = _VERSION_SUFFIX.sub("", base)
    suffix = f" (v{number})"
    return stem[:200 - len(suffix)] + suffix


def batch_new_version(*, batch: Batch, owner, file: IO[bytes] | None = None, filename: str = "",
                      sheet: str | None = None, name: str = "") -> Batch:
    """A draft with the batch's prompt and settings and its rows, or the rows of `file` in their
    place (checked like any new file). Start it, or edit it first."""
    settings_ = dict(
        prompt=batch.prompt_template, model=batch.model_name,
        system_instruction=batch.system_instruction, temperature=batch.temperature,
        max_output_tokens=batch.max_output_tokens, concurrency=batch.concurrency,
        max_retries=batch.max_retries, priority=batch.priority,
        conversation_column=batch.conversation_column, rpm_limit=batch.rpm_limit,
        tpm_limit=batch.tpm_limit, response_schema=batch.response_schema,
        use_cache=batch.use_cache, thinking=batch.thinking, language=batch.language,
        google_search=batch.google_search, url_context=batch.url_context,
    )
    name = (name or "").strip()[:200] or version_name(batch)
    if file is not None:
        return services.batch_create(owner=owner, file=file, filename=filename, sheet=sheet,
                                     name=name, start=False, parent=batch, **settings_)
    saved: list[str] = []
    try:
        return _copy(batch, owner, name, saved)
    except BaseException:
        for path in saved:  # the version's copies of the documents, if it was not created
            documents.delete_quietly(path)
        raise


def _copy(batch: Batch, owner, name: str, saved: list[str]) -> Batch:
    with transaction.atomic():
        version = Batch.objects.create(
            owner=owner, name=name, source_filename=batch.source_filename,
            columns=batch.columns, prompt_template=batch.prompt_template,
            model_name=batch.model_name, system_instruction=batch.system_instruction,
            temperature=batch.temperature, max_output_tokens=batch.max_output_tokens,
            response_schema=batch.response_schema, concurrency=batch.concurrency,
            max_retries=batch.max_retries, priority=batch.priority,
            conversation_column=batch.conversation_column, rpm_limit=batch.rpm_limit,
            tpm_limit=batch.tpm_limit, use_cache=batch.use_cache, parent=batch,
            thinking=batch.thinking, language=batch.language,
            google_search=batch.google_search, url_context=batch.url_context,
            status=Batch.Status.DRAFT, total_rows=batch.total_rows,
        )
        ids = _copy_documents(batch, version, saved)
        rows = (batch.results.order_by("index")
                .values_list("index", "source_line", "input", "prompt", "conversation_key",
                             "document_ids")
                .iterator(chunk_size=COPY_CHUNK))
        row_insert.insert_rows(version, (
            (index, line, input_, prompt, key, [ids[d] for d in docs or () if d in ids])
            for index, line, input_, prompt, key, docs in rows))
    version.warnings = []
    return version


def _copy_documents(batch: Batch, version: Batch, saved: list[str]) -> dict[int, int]:
    """The version's own copy of each document (deleting the parent removes the parent's);
    old id -> new id."""
    ids = {}
    for doc in batch.documents.all():
        path = default_storage.save(f"documents/v{version.pk}/{doc.sha256}",
                                    ContentFile(documents.read_bytes(doc.path)))
        saved.append(path)
        ids[doc.pk] = BatchDocument.objects.create(
            batch=version, name=doc.name, path=path, sha256=doc.sha256, size=doc.size,
            mime_type=doc.mime_type, pages=doc.pages).pk
    return ids
