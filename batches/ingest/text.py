"""Text uploads for batches.ingest: encoding, incremental decoding, lines and CSV records.

The encoding is sniffed from the head (BOM, else UTF-8, else cp1252, else latin-1); the
Decoder falls back down that chain at the first bad byte, warning on the table. split_lines
yields physical lines with their endings, so csv's line_num counts physical lines.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from batches.ingest.base import (
    DELIMITERS,
    HEAD_BYTES,
    MAX_FIELD_CHARS,
    IngestError,
    Table,
    check_header,
    human_size,
    plural,
    too_many_rows,
)


def sniff_delimiter(sample: str) -> str:
    lines = [line for line in sample.splitlines()[:100] if line.strip()]
    counts = {d: lines[0].count(d) for d in DELIMITERS} if lines else {}
    present = [d for d in DELIMITERS if counts.get(d)]
    if len(present) < 2:
        return present[0] if present else ","
    # Several candidates in the header: let the sniffer judge consistency across lines, but
    # only among delimiters the header contains, and on 8 KB: its quote regex is quadratic.
    try:
        return csv.Sniffer().sniff("\n".join(lines)[:8192], "".join(present)).delimiter
    except csv.Error:
        return max(present, key=counts.__getitem__)



# Decoding.

_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
]
FALLBACKS = {"utf-8": ["utf-8", "cp1252", "latin-1"], "cp1252": ["cp1252", "latin-1"]}
_LABELS = {"utf-8": "UTF-8", "cp1252": "cp1252 (Windows-1252)", "latin-1": "latin-1 (ISO-8859-1)",
           "utf-16-le": "UTF-16", "utf-16-be": "UTF-16", "utf-32-le": "UTF-32",
           "utf-32-be": "UTF-32"}
ENCODING_WARNINGS = {
    "cp1252": "The file is not valid UTF-8; it was read as cp1252 (Windows-1252). "
              "Check accented characters.",
    "latin-1": "The file is not valid UTF-8 or Windows-1252; it was read as latin-1 "
               "(ISO-8859-1). Check accented characters.",
}


def find_bom(head: bytes) -> tuple[str | None, bytes, str | None]:
    for bom, codec, name in _BOMS:
        if head.startswith(bom):
            return codec, bom, name
    return None, b"", None


def sniff_encoding(head: bytes) -> tuple[str, bytes, str]:
    """(codec to decode with, BOM to skip, encoding to report)."""
    codec, bom, name = find_bom(head)
    if codec:
        return codec, bom, name
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
        return "utf-8", b"", "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        return "cp1252", b"", "cp1252"
    except UnicodeDecodeError:
        return "latin-1", b"", "latin-1"


class Decoder:
    """Incremental decoding that falls back (utf-8 -> cp1252 -> latin-1) at the first bad byte."""

    def __init__(self, chain: list[str], table: Table):
        self.chain = chain
        self.table = table
        self.decoder = codecs.getincrementaldecoder(chain[0])()
        self.breaks = 0  # line breaks decoded so far, to name the line of a bad byte
        self.ended_with_cr = False

    def texts(self, chunks: Iterable[bytes]) -> Iterator[str]:
        for chunk in chunks:
            if text := self._decode(chunk, False):
                yield text
        if text := self._decode(b"", True):
            yield text

    def _decode(self, data: bytes, final: bool) -> str:
        text = self._decode_from(data, final, self.breaks)
        if "\x00" in text:  # csv accepts NUL, but PostgreSQL cannot store it in text or JSON
            line = self.breaks + _breaks(text[:text.index("\x00")]) + 1
            raise IngestError(f"Line {line} contains a NUL character (byte 0), which is not "
                              "text. Is this a binary file?", line=line)
        breaks = _breaks(text)
        if self.ended_with_cr and text.startswith("\n"):
            breaks -= 1
        self.breaks += breaks
        self.ended_with_cr = text.endswith("\r")
        return text

    def _decode_from(self, data: bytes, final: bool, breaks: int) -> str:
        try:
            return self.decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            # exc.object holds every byte not yet decoded (including bytes buffered earlier).
            codec = self.chain[0]
            good = exc.object[:exc.start].decode(codec)
            breaks += _breaks(good)
            line = breaks + 1
            label = _LABELS[codec]
            if len(self.chain) == 1:
                raise IngestError(f"The file is not valid {label}: line {line} has bytes that "
                                  "cannot be decoded.", line=line) from None
            self.chain = self.chain[1:]
            self.decoder = codecs.getincrementaldecoder(self.chain[0])()
            self.table.encoding = self.chain[0]
            self.table.warnings.append(
                f"The file is not valid {label} from line {line}; from there it was read as "
                f"{_LABELS[self.chain[0]]}. Check accented characters.")
            return good + self._decode_from(exc.object[exc.start:], final, breaks)


def _breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


_BREAK = re.compile(r"(\r\n|\r|\n)")


def split_lines(texts: Iterable[str], eof: list[bool]) -> Iterator[str]:
    """Physical lines with their endings, like a text file opened with newline=""."""
    # Lists per chunk chained in C: a per-line Python generator doubled the time per line.
    return chain.from_iterable(_line_batches(texts, eof))


def _line_batches(texts: Iterable[str], eof: list[bool]) -> Iterator[list[str]]:
    carry: list[str] = []
    held_cr = False
    for text in texts:
        if held_cr:
            text, held_cr = "\r" + text, False
        if text.endswith("\r"):  # may be the first half of a \r\n split across chunks
            text, held_cr = text[:-1], True
        parts = _BREAK.split(text)
        if len(parts) == 1:
            carry.append(text)
            continue
        if carry:
            parts[0] = "".join(carry) + parts[0]
            carry = []
        yield list(map(str.__add__, parts[0:-1:2], parts[1::2]))
        if parts[-1]:
            carry.append(parts[-1])
    if held_cr:
        carry.append("\r")
    if tail := "".join(carry):
        yield [tail]
    eof.append(True)  # runs only when the reader asks for a line past the last one



# CSV.

def start_csv(table: Table, lines: Iterator[str], eof: list[bool], max_rows: int) -> None:
    reader = csv.reader(lines, delimiter=table.delimiter, quotechar='"', doublequote=True,
                        skipinitialspace=False, strict=False)
    records = _records(reader, eof)
    try:
        line, header = next(records)
    except StopIteration:
        raise IngestError("The file has no header row: it contains only blank lines.") from None
    table.columns = check_header(header, line=line)
    if not table.columns:
        raise IngestError("The file has no header row: it contains only blank lines.")
    table.rows = _csv_rows(table, records, table.columns, max_rows)


def _records(reader: Any, eof: list[bool]) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) of each record that is not blank."""
    line = 0
    try:
        for fields in reader:
            if not fields:  # an empty line, always exactly one line long
                line += 1
                continue
            start, line = line + 1, reader.line_num
            # A record only runs into the end of the file when a quoted field never closes.
            if eof:
                raise IngestError(f'Line {start} opens a quoted field (") that is never closed, '
                                  "so the rest of the file would be one cell. Check for a stray "
                                  "quote.", line=start)
            if any(fields) and (len(fields) > 1 or fields[0].strip()):
                yield start, fields
    except csv.Error as exc:
        raise _csv_error(exc, line + 1) from None


def _csv_error(exc: csv.Error, line: int) -> IngestError:
    if "field larger than field limit" in str(exc):
        return IngestError(f"Line {line} has a cell longer than {human_size(MAX_FIELD_CHARS)} "
                           '(the limit). If it should not be, check for a stray quote (") there.',
                           line=line)
    return IngestError(f"Line {line} cannot be read as CSV: {exc}.", line=line)


def _csv_rows(table: Table, records: Iterator[tuple[int, list[str]]], columns: list[str],
              max_rows: int) -> Iterator[dict[str, str]]:
    width = len(columns)
    count = 0
    for line, fields in records:
        if len(fields) > width:
            if any(value.strip() for value in fields[width:]):
                raise IngestError(f"Line {line} has {len(fields):,} fields but the header has "
                                  f"{plural(width, 'column')}.", line=line)
            del fields[width:]
        count += 1
        if count > max_rows:
            raise too_many_rows(max_rows, line)
        # Short rows are stored as they are: padding a 2-byte line to a 10,000-column header
        # would store 128 KB. A missing cell renders as empty.
        table.line = line
        yield dict(zip(columns, fields, strict=False))
