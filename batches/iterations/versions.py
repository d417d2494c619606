"""New versions: a draft made from a batch's rows (or a corrected file), linked by `parent`."""

from __future__ import annotations

import re
from itertools import islice
from typing import IO

from django.db import transaction

from batches import services
from batches.models import Batch, BatchResult

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
        use_cache=batch.use_cache,
    )
    name = (name or "").strip()[:200] or version_name(batch)
    if file is not None:
        return services.batch_create(owner=owner, file=file, filename=filename, sheet=sheet,
                                     name=name, start=False, parent=batch, **settings_)
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
            status=Batch.Status.DRAFT, total_rows=batch.total_rows,
        )
        rows = (batch.results.order_by("index")
                .values_list("index", "input", "prompt", "conversation_key")
                .iterator(chunk_size=COPY_CHUNK))
        while chunk := list(islice(rows, COPY_CHUNK)):
            BatchResult.objects.bulk_create(
                BatchResult(batch=version, index=index, input=input_, prompt=prompt,
                            conversation_key=key)
                for index, input_, prompt, key in chunk
            )
    version.warnings = []
    return version
