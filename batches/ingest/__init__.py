"""Ingest: an uploaded file (CSV, XLSX, JSONL) or the API's JSON rows -> a header and rows
streamed lazily, with errors that name the file's line, column and field.

Layers, lowest first: base (limits, IngestError, Table, header checks), then text, xlsx and
jsonl (one format each), then reader (open_table: format sniffing and byte limits), then
several (open_tables: several files as one table with a source_file column). It must
never import models, services or anything above it: it is plain Python over file objects.
"""

from batches.ingest.base import MAX_COLUMNS, IngestError, Table
from batches.ingest.reader import open_table, preview, table_from_rows
from batches.ingest.several import SOURCE_COLUMN, open_tables

__all__ = ["MAX_COLUMNS", "SOURCE_COLUMN", "IngestError", "Table", "open_table", "open_tables",
           "preview", "table_from_rows"]
