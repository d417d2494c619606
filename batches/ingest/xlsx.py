"""XLSX for batches.ingest: zip-bomb checks first, then openpyxl in read-only mode.

openpyxl parses through defusedxml (a dependency), so DOCTYPEs with entities are refused; it
loads shared strings and styles whole even in read-only mode, so those parts have caps of their
own. Read-only openpyxl yields an empty row for every missing row number, so a single cell at row
10^12 would loop for ever: rows stop at Excel's last row and blank rows count against a cap."""

from __future__ import annotations

import datetime as dt
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException

from batches.ingest.base import (
    IngestError,
    Table,
    check_header,
    column_letter,
    human_size,
    plural,
    too_many_rows,
)

MAX_EXPANSION = 20  # total unzipped size, as a multiple of the upload limit
MAX_RATIO = 100  # compression ratio allowed for one large part
RATIO_MIN_BYTES = 10 * 1024 * 1024  # parts smaller than this may compress as well as they like
MAX_ZIP_ENTRIES = 10_000  # a workbook has a few dozen parts; each entry costs memory to list
# Parts openpyxl reads whole into memory, unzipped sizes.
MAX_PART_BYTES = {"xl/sharedStrings.xml": 100 * 1024 * 1024, "xl/styles.xml": 16 * 1024 * 1024}
EXCEL_MAX_ROWS = 1_048_576
MAX_BLANK_ROWS = 100_000

_DAMAGED = ("This file is not a valid XLSX workbook: it is damaged or is not an Excel file. "
            "Open it in Excel and save it again.")
_ENTITIES = ("This workbook contains XML entity declarations (a DOCTYPE), which Excel never "
             "writes and which are refused. Open it in Excel and save it again.")
_READ_ERRORS = (zipfile.BadZipFile, ParseError, ValueError, KeyError, TypeError, OSError,
                EOFError, zlib.error)


def open_xlsx(file: IO[bytes], *, sheet: str | None, max_rows: int, max_bytes: int) -> Table:
    _check_zip(file, max_bytes)
    file.seek(0)
    from openpyxl import load_workbook

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about every unsupported extension
            workbook = load_workbook(file, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds of error for a damaged part
        raise IngestError(_ENTITIES if _refused_xml(exc) else _DAMAGED) from exc
    try:
        worksheet = _pick_sheet(workbook, sheet)
        # Read-only mode trusts the sheet's stored dimensions, which some writers get wrong.
        worksheet.reset_dimensions()
        values = worksheet.iter_rows(max_row=EXCEL_MAX_ROWS, values_only=True)
        line, header = _header(values, worksheet.title)
        columns = check_header(header, line=line, unit="row")
    except DefusedXmlException as exc:
        workbook.close()
        raise IngestError(_ENTITIES) from exc
    except _READ_ERRORS as exc:
        workbook.close()
        raise IngestError(_DAMAGED) from exc
    except BaseException:
        workbook.close()
        raise
    table = Table(columns=columns, rows=iter(()), format="xlsx",
                  sheets=list(workbook.sheetnames), sheet=worksheet.title)
    table.rows = _rows(table, workbook, values, columns, line, max_rows)
    return table


def _refused_xml(exc: BaseException | None) -> bool:
    """Whether defusedxml refused the XML, perhaps under an error openpyxl raised from it."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DefusedXmlException):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _check_zip(file: IO[bytes], max_bytes: int) -> None:
    _check_entry_count(file)
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise IngestError(_DAMAGED) from exc
    names = {part.filename for part in parts}
    if "[Content_Types].xml" not in names or not any(n.startswith("xl/") for n in names):
        raise IngestError("This is a ZIP archive, not an XLSX workbook.")
    total = sum(part.file_size for part in parts)
    if total > MAX_EXPANSION * max_bytes:
        raise IngestError(f"This workbook would unzip to {human_size(total)} (the limit is "
                          f"{human_size(MAX_EXPANSION * max_bytes)}); it looks like a zip bomb.")
    for part in parts:
        cap = MAX_PART_BYTES.get(part.filename)
        if cap is not None and part.file_size > cap:
            raise IngestError(f"The workbook part {part.filename} unzips to "
                              f"{human_size(part.file_size)} (the limit is {human_size(cap)}). "
                              "Save the sheet as CSV and upload that instead.")
        ratio = part.file_size / max(part.compress_size, 1)
        if part.file_size > RATIO_MIN_BYTES and ratio > MAX_RATIO:
            raise IngestError(f"The workbook part {part.filename} is compressed {ratio:,.0f} to 1 "
                              f"(the limit is {MAX_RATIO} to 1); it looks like a zip bomb.")


def _check_entry_count(file: IO[bytes]) -> None:
    """Refuse a zip with too many entries from its end record, before listing them all."""
    try:
        end = zipfile._EndRecData(file)  # the stdlib's reader of the end-of-directory record
    except (OSError, ValueError, EOFError):
        end = None
    if end and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_ZIP_ENTRIES:
        raise IngestError(f"This workbook has {end[zipfile._ECD_ENTRIES_TOTAL]:,} parts (the "
                          f"limit is {MAX_ZIP_ENTRIES:,}); it is not a normal Excel file.")


def _pick_sheet(workbook: Any, sheet: str | None) -> Any:
    if not sheet:
        if not workbook.worksheets:
            raise IngestError("This workbook has no worksheets.")
        return workbook.worksheets[0]
    if sheet not in workbook.sheetnames:
        names = ", ".join(f"'{name}'" for name in workbook.sheetnames)
        raise IngestError(f"There is no sheet named '{sheet}' in this workbook. Its sheets are: "
                          f"{names}.", field="sheet")
    worksheet = workbook[sheet]
    if not hasattr(worksheet, "iter_rows"):
        raise IngestError(f"The sheet '{sheet}' is a chart, not a table.", field="sheet")
    return worksheet


def _header(values: Iterator[tuple], title: str) -> tuple[int, list[str]]:
    """The first row with any value is the header."""
    for line, cells in enumerate(values, 1):
        texts = [cell_text(value) for value in cells]
        if any(text.strip() for text in texts):
            return line, texts
        if line > MAX_BLANK_ROWS:
            raise IngestError(f"The sheet '{title}' has no values in its first "
                              f"{MAX_BLANK_ROWS:,} rows; put the header in the first row.",
                              line=line)
    raise IngestError(f"The sheet '{title}' is empty.")


def _rows(table: Table, workbook: Any, values: Iterator[tuple], columns: list[str],
          header_line: int,
          max_rows: int) -> Iterator[dict[str, str]]:
    width = len(columns)
    count = blank = 0
    line = header_line
    try:
        for line, cells in enumerate(values, header_line + 1):
            texts = [cell_text(value) for value in cells]
            if not any(text.strip() for text in texts):
                blank += 1
                if blank > MAX_BLANK_ROWS:
                    raise IngestError(
                        f"The sheet has more than {MAX_BLANK_ROWS:,} empty rows (at row {line:,}"
                        "); delete the empty rows, or a stray cell far below the data, and save "
                        "it again.", line=line)
                continue
            if len(texts) > width:
                extra = next((i for i in range(width, len(texts)) if texts[i].strip()), None)
                if extra is not None:
                    raise IngestError(f"Row {line} has a value in column "
                                      f"{column_letter(extra + 1)} but the header has only "
                                      f"{plural(width, 'column')}.", line=line)
                del texts[width:]
            count += 1
            if count > max_rows:
                raise too_many_rows(max_rows, line)
            # Short rows are stored as they are; a missing cell renders as empty.
            table.line = line
            yield dict(zip(columns, texts, strict=False))
    except DefusedXmlException as exc:
        raise IngestError(_ENTITIES, line=line) from exc
    except _READ_ERRORS as exc:
        raise IngestError(f"The workbook is damaged after row {line}; open it in Excel and "
                          "save it again.", line=line) from exc
    finally:
        workbook.close()


def cell_text(value: object) -> str:
    """A cell as text: ints without ".0", floats as repr, dates in ISO 8601, empty as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)
