"""Uploaded file -> header + lazily streamed rows, with precise errors.

Formats: CSV (delimiter and encoding sniffed; see text.py), XLSX (see xlsx.py) and JSONL
(see jsonl.py). The header is read eagerly, so header problems raise from open_table; row
problems raise from the `rows` iterator, which the caller consumes whole before it opens the
transaction that stores the rows.

Rules worth knowing:
- Fully empty lines/rows are skipped; short rows are kept short (a missing cell renders as
  empty; padding would let a small file expand into huge rows); extra trailing fields
  are dropped when empty and are an error when they hold data.
- Line numbers are physical lines (1-based, header on line 1), also after quoted newlines.
- JSONL columns are the keys of the first object (rows stream, so later lines cannot add
  columns): a later key that the first object lacks is an error naming the line and key.
  JSON values keep their types (nested objects and lists stay as they are).
- Warnings about the encoding found mid-stream are appended to table.warnings while the
  rows are iterated.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from itertools import islice
from typing import IO

from batches.ingest import text
from batches.ingest.base import (
    CHUNK_BYTES,
    CSV_EXTENSIONS,
    HEAD_BYTES,
    JSONL_EXTENSIONS,
    MAX_COLUMNS,
    MB,
    XLSX_EXTENSIONS,
    IngestError,
    Table,
    human_size,
    json_kind,
    limits,
)
from batches.ingest.jsonl import start_jsonl


def open_table(file: IO[bytes], *, filename: str, sheet: str | None = None,
               max_rows: int | None = None, max_bytes: int | None = None) -> Table:
    """Read the header of a CSV, XLSX or JSONL upload; rows stream lazily from table.rows.

    A seekable file is read from its start (so preview and create can share one upload).
    """
    max_rows, max_bytes = limits(max_rows, max_bytes)
    seekable = _rewind(file)
    size = _known_size(file, seekable)
    if size is not None and size > max_bytes:
        raise IngestError(f"The file is {human_size(size)}; the limit is {human_size(max_bytes)}.")
    source = _Source(file, max_bytes)
    head = source.read_head()
    if not head:
        raise IngestError("The file is empty.")
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[1].lower() if "." in name else ""
    if _is_zip(head, ext):
        from batches.ingest import xlsx  # openpyxl is slow to import; only XLSX needs it

        if seekable:
            file.seek(0)
        else:
            file = _spool(head, source)
        return xlsx.open_xlsx(file, sheet=sheet, max_rows=max_rows, max_bytes=max_bytes)

    codec, bom, encoding = text.sniff_encoding(head)
    _reject_binary(head, ext, bom)
    whole = len(head) < HEAD_BYTES
    sample = head[len(bom):].decode(codec, errors="replace")
    if not whole:
        sample = sample[:max(sample.rfind("\n"), sample.rfind("\r")) + 1] or sample
    kind = _sniff_kind(sample, ext)
    table = Table(columns=[], rows=iter(()), format=kind, encoding=encoding)
    if encoding in ("cp1252", "latin-1"):
        table.warnings.append(text.ENCODING_WARNINGS[encoding])
    decoder = text.Decoder(text.FALLBACKS.get(codec, [codec]), table)
    eof: list[bool] = []
    lines = text.split_lines(decoder.texts(source.chunks(head[len(bom):])), eof)
    if kind == "jsonl":
        start_jsonl(table, lines, max_rows)
    else:
        table.delimiter = "\t" if ext in ("tsv", "tab") else text.sniff_delimiter(sample)
        text.start_csv(table, lines, eof, max_rows)
    return table


def table_from_rows(rows: list[dict], *, max_rows: int | None = None) -> Table:
    """A table from the JSON API's {"rows": [...]}: columns are the union of keys, in order."""
    max_rows, _ = limits(max_rows, 0)
    if not isinstance(rows, list) or not rows:
        raise IngestError("There are no rows: send a list with at least one object.", field="rows")
    if len(rows) > max_rows:
        raise IngestError(f"There are more than {max_rows:,} rows (the limit is {max_rows:,}).",
                          field="rows")
    columns: dict[str, None] = {}
    clean = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row:
            what = "an empty object" if isinstance(row, dict) else json_kind(row)
            raise IngestError(f"rows[{i}] is {what}; each row must be an object with at least "
                              "one key.", field="rows")
        out = {}
        for key, value in row.items():
            name = key.strip() if isinstance(key, str) else ""
            if not name:
                raise IngestError(f"rows[{i}] has a key with no name ({key!r}).", field="rows")
            if name in out:
                raise IngestError(f'rows[{i}] has the key "{name}" twice.', field="rows",
                                  column=name)
            out[name] = value
            columns.setdefault(name)
        clean.append(out)
    if len(columns) > MAX_COLUMNS:
        raise IngestError(f"The rows have {len(columns):,} different keys; the limit is "
                          f"{MAX_COLUMNS:,}.", field="rows")
    return Table(columns=list(columns), rows=iter(clean), format="json")


def preview(file: IO[bytes], *, filename: str, sheet: str | None = None,
            limit: int = 3) -> tuple[Table, list[dict]]:
    """The header and the first `limit` rows, reading only as much of the file as that needs."""
    table = open_table(file, filename=filename, sheet=sheet)
    rows = list(islice(table.rows, limit))
    close = getattr(table.rows, "close", None)
    if close is not None:
        close()
    return table, rows


# Reading bytes.

def _rewind(file: IO[bytes]) -> bool:
    try:
        if file.seekable():
            file.seek(0)
            return True
    except (AttributeError, OSError, ValueError):
        pass
    return False


def _known_size(file: IO[bytes], seekable: bool) -> int | None:
    size = getattr(file, "size", None)
    if isinstance(size, int):
        return size
    if seekable:
        end = file.seek(0, 2)
        file.seek(0)
        return end
    return None


class _Source:
    """Reads the upload in chunks, counting bytes so that an oversized stream stops early."""

    def __init__(self, file: IO[bytes], max_bytes: int):
        self.file = file
        self.max_bytes = max_bytes
        self.total = 0

    def read(self, n: int) -> bytes:
        data = self.file.read(n)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("open_table needs a file opened in binary mode")
        self.total += len(data)
        if self.total > self.max_bytes:
            raise IngestError(f"The file is larger than {human_size(self.max_bytes)} "
                              "(the limit).")
        return bytes(data)

    def read_head(self) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < HEAD_BYTES and (data := self.read(HEAD_BYTES - got)):
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def chunks(self, first: bytes) -> Iterator[bytes]:
        if first:
            yield first
        while data := self.read(CHUNK_BYTES):
            yield data


def _spool(head: bytes, source: _Source) -> IO[bytes]:
    """Copy an unseekable XLSX upload (zipfile needs to seek), still counting bytes."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * MB)
    spool.write(head)
    while data := source.read(CHUNK_BYTES):
        spool.write(data)
    spool.seek(0)
    return spool


# Recognising the format.

_MAGIC = [
    (b"\x89PNG", "it is a PNG image"),
    (b"\xff\xd8\xff", "it is a JPEG image"),
    (b"GIF8", "it is a GIF image"),
    (b"%PDF", "it is a PDF document"),
    (b"\x1f\x8b", "it is a gzip archive"),
    (b"Rar!", "it is a RAR archive"),
    (b"7z\xbc\xaf", "it is a 7-Zip archive"),
]
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MARKUP = re.compile(r"\s*<(!doctype|html|\?xml|table)", re.IGNORECASE)
_BINARY_CONTROLS = bytes(range(9)) + bytes(range(14, 32))


def _is_zip(head: bytes, ext: str) -> bool:
    return head.startswith(b"PK\x03\x04") or (ext in XLSX_EXTENSIONS and head.startswith(b"PK"))


def _reject_binary(head: bytes, ext: str, bom: bytes) -> None:
    if head.startswith(_OLE):
        raise IngestError("This is a legacy Excel .xls file (or a password-protected workbook). "
                          "Save it as .xlsx or CSV, without a password, and upload that.")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise IngestError(f"This does not look like a CSV, XLSX or JSONL file ({what}).")
    if ext in XLSX_EXTENSIONS:
        raise IngestError(f"The file's name ends in .{ext} but it is not an Excel workbook. "
                          "If it is CSV, rename it to .csv.")
    if not bom:
        first = head[:1024]
        controls = sum(first.count(c) for c in _BINARY_CONTROLS)
        if b"\x00" in first or controls > len(first) // 10:
            raise IngestError("This does not look like a CSV, XLSX or JSONL file "
                              "(it starts with binary data).")


def _sniff_kind(sample: str, ext: str) -> str:
    if ext in CSV_EXTENSIONS:
        return "csv"
    if ext in JSONL_EXTENSIONS:
        return "jsonl"
    start = sample.lstrip()[:1]
    if start == "{":
        return "jsonl"
    if start == "[" and ext == "json":
        raise IngestError("This is a JSON array. Upload JSON Lines (.jsonl: one object per line), "
                          'or send the array to the API as {"rows": [...]}.')
    if _MARKUP.match(sample):
        raise IngestError("This does not look like a CSV, XLSX or JSONL file (it is an HTML or "
                          "XML document).")
    return "csv"
