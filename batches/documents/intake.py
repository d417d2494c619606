"""What a creation or an addition sends -> the rows to create and the documents each row
attaches. One of: a spreadsheet, several spreadsheets, JSON rows, or documents alone (one row
per file); a spreadsheet or rows may come with documents that `{{file:column}}` refers to.

`gather` checks and stores every document first (a Staging that the caller discards on any
error), then opens the table; `bind(batch)` records the documents, after which `document_ids`
gives each row's attachments. Names a row refers to but nobody uploaded are collected while
rows stream and reported by `check_references()`, so nothing is half-created."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from batches import ingest, prompts
from batches.documents.kinds import DocumentError
from batches.documents.store import DOCUMENT_COLUMNS, StagedFile, Staging
from batches.documents.unpack import Limits, files_in
from batches.models import Batch, BatchDocument

Upload = tuple[str, IO[bytes]]
DUPLICATE_CHOICES = ("keep", "skip")
MISSING_LISTED = 5


@dataclass
class Intake:
    table: ingest.Table
    staging: Staging
    file_columns: list[str]
    documents_only: bool
    missing: list[str] = field(default_factory=list)
    _ids: dict[str, int] = field(default_factory=dict)
    _by_name: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    def bind(self, batch: Batch) -> None:
        self._ids = self.staging.records(batch) if self.staging.files else {}

    @property
    def attaches(self) -> bool:
        """Whether rows may name documents (document_ids is [] for every row otherwise)."""
        return self.documents_only or bool(self.file_columns)

    def document_ids(self, row: dict) -> list[int]:
        if self.documents_only:
            return [self._ids[row["sha256"]]]
        ids = []
        for column in self.file_columns:
            name = prompts.format_value(row.get(column)).strip()
            if not name:
                continue
            sha = self._by_name.get(name) or self._by_name.get(name.rsplit("/", 1)[-1])
            if sha is None:
                if name not in self.missing and len(self.missing) < MISSING_LISTED + 1:
                    self.missing.append(name)
                continue
            ids.append(self._ids[sha])
        return ids

    def check_references(self) -> None:
        if self.missing:
            shown = ", ".join(self.missing[:MISSING_LISTED])
            more = " and more" if len(self.missing) > MISSING_LISTED else ""
            raise DocumentError(f"Rows name files that were not uploaded: {shown}{more}.")


def gather(*, template: prompts.Template, file: IO[bytes] | None = None, filename: str = "",
           files: list[Upload] | None = None, rows: list[dict] | None = None,
           documents: list[Upload] | None = None, duplicates: str | None = None,
           sheet: str | None = None, batch: Batch | None = None) -> Intake:
    """Raises DocumentError, ingest.IngestError; the caller discards `intake.staging` (or the
    Staging passed back in the error's context) on any error after this returns."""
    sources = sum(x is not None and x != [] for x in (file, files, rows))
    if sources > 1:
        raise ingest.IngestError("Send one of: a file, several files, or rows.")
    existing = list(BatchDocument.objects.filter(batch=batch)) if batch is not None else []
    staging = Staging(existing)
    try:
        if documents:
            _stage(staging, documents, duplicates, existing)
        table, documents_only = _table(template, file, filename, files, rows, sheet, staging,
                                       duplicates)
    except BaseException:
        staging.discard()
        raise
    intake = Intake(table=table, staging=staging, file_columns=template.file_columns,
                    documents_only=documents_only)
    for staged in staging.files:
        intake._by_name.setdefault(staged.name, staged.sha256)
        intake._by_name.setdefault(staged.name.rsplit("/", 1)[-1], staged.sha256)
    for doc in existing:
        intake._by_name.setdefault(doc.name, doc.sha256)
    if not documents_only and template.file_columns and not documents and not existing:
        staging.discard()
        raise DocumentError("The prompt attaches files with {{file:...}}, but no files were "
                            "uploaded.")
    if not documents_only and documents and not template.file_columns:
        staging.discard()
        raise DocumentError("Documents were uploaded with a spreadsheet, but the prompt has no "
                            "{{file:column}} saying which column names each row's file.")
    return intake


def _stage(staging: Staging, documents: list[Upload], duplicates: str | None,
           existing: list[BatchDocument]) -> None:
    if duplicates not in (None, "", *DUPLICATE_CHOICES):
        raise DocumentError("duplicates must be keep or skip.")
    uploads = files_in(documents, Limits.from_settings(), len(existing),
                       sum(doc.size for doc in existing))
    for name, data in uploads:
        staging.add(name, data)
    dups = staging.duplicates
    if dups and not duplicates:
        listed = "; ".join(f"{d.name} (same as {d.duplicate_of})" for d in dups[:10])
        raise DocumentError(f"{len(dups)} file(s) have the same content as another: {listed}. "
                            "Choose whether to keep or skip duplicates.")


def _table(template: prompts.Template, file, filename, files, rows, sheet, staging: Staging,
           duplicates: str | None) -> tuple[ingest.Table, bool]:
    if rows is not None:
        return ingest.table_from_rows(rows), False
    if files and len(files) > 1:
        return ingest.open_tables(files, required=template.columns, sheet=sheet), False
    if files:
        filename, file = files[0]
    if file is not None:
        return ingest.open_table(file, filename=filename, sheet=sheet), False
    if not staging.files:
        raise ingest.IngestError("Send a spreadsheet, rows or documents.")
    kept = [f for f in staging.files if not (duplicates == "skip" and f.duplicate_of)]
    return ingest.Table(columns=list(DOCUMENT_COLUMNS), rows=_document_rows(kept),
                        format="documents"), True


def _document_rows(files: list[StagedFile]) -> Iterator[dict]:
    for staged in files:
        yield staged.row_input()
