"""Binary and huge files for the ingest corpus, generated at test time instead of committed.

build(name, directory) writes the file called `name` into `directory` and returns its path.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from openpyxl import Workbook

MB = 1024 * 1024


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    workbook = Workbook(write_only=True)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def _normal_xlsx(path: Path) -> None:
    write_xlsx(path, {"People": [
        ["name", "age", "score", "joined", "seen", "active", "note"],
        ["Ada", 36, 2.5, dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 14, 30), True, None],
        ["Grace", 85.0, 0.1, None, None, False, "a note"],
    ]})


def _two_sheets_xlsx(path: Path) -> None:
    write_xlsx(path, {
        "Summary": [["total"], [2]],
        "Data": [["id", "text"], [1, "first"], [2, "second"]],
    })


def _empty_sheet_xlsx(path: Path) -> None:
    write_xlsx(path, {"Empty": [], "Other": [["a"], [1]]})


def _messy_xlsx(path: Path) -> None:
    # Header on row 3, a blank row in the middle, a short row and trailing empty rows.
    write_xlsx(path, {"Sheet": [
        [], [None, None], ["id", "text", None], [1, "a"], [None, None, None], [2], [], [None],
    ]})


def _wide_row_xlsx(path: Path) -> None:
    write_xlsx(path, {"Sheet": [["id", "text"], [1, "a"], [2, "b", None, "stray"]]})


def _blank_header_xlsx(path: Path) -> None:
    write_xlsx(path, {"Sheet": [["id", None, "text"], [1, 2, 3]]})


def _corrupt_xlsx(path: Path) -> None:
    _normal_xlsx(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zip_bomb_xlsx(path: Path) -> None:
    # 64 MB of zeros compress about 1000 to 1; written in chunks to keep memory small.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as part:
            for _ in range(64):
                part.write(bytes(MB))


def _zip_not_xlsx(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "just a zip")


def _ole(path: Path) -> None:
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + b"\xfe\xff" * 100)


def _png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def _png(path: Path) -> None:
    path.write_bytes(_png_bytes())


def _pdf(path: Path) -> None:
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n")


def _nul_bytes(path: Path) -> None:
    path.write_bytes(b"a,b\n" + bytes(range(256)) * 4)


def _nul_late(path: Path) -> None:
    # Text for the first kilobytes, then a NUL on line 301.
    path.write_bytes(b"id,text\n" + b"".join(b"%d,row\n" % i for i in range(299)) + b"x,a\x00b\n")


def _utf16(path: Path) -> None:
    path.write_bytes("name,city\nZoë,Kraków\n".encode("utf-16"))  # little-endian with a BOM


def _utf16_be(path: Path) -> None:
    path.write_bytes(b"\xfe\xff" + "id\tname\n1\t東京\n".encode("utf-16-be"))


def _utf16_broken(path: Path) -> None:
    # A lone high surrogate on line 3.
    good = "a,b\n1,2\n".encode("utf-16-le")
    path.write_bytes(b"\xff\xfe" + good + b"\x00\xd8" + "x,y\n".encode("utf-16-le"))


def _cp1252_late(path: Path) -> None:
    # 200 KB of ASCII, then Windows-1252 on line 5,002: past the sniffed head.
    rows = b"".join(b"%d,%s\n" % (i, b"x" * 32) for i in range(5000))
    path.write_bytes(b"id,text\n" + rows + "5000,café\n".encode("cp1252"))


def _columns(n: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        header = ",".join(f"c{i}" for i in range(1, n + 1))
        row = ",".join(str(i) for i in range(1, n + 1))
        path.write_text(f"{header}\n{row}\n")

    return write


def _big_field(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as out:
            out.write(b'id,text\n1,short\n2,"')
            block = (b'ab,c""' + b"z" * 1017 + b"\n") * 1024  # 1 MB of 1 KB lines
            written = 0
            while written < size:
                out.write(block)
                written += len(block)
            out.write(b'"\n3,after\n')

    return write


# Hostile workbooks (issue 13), written part by part so that each can break one rule.

_PKG = "http://schemas.openxmlformats.org/package/2006"
_DOC_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_OXML = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_CONTENT_TYPES = (
    f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{_PKG}/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_OXML}.sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_OXML}.worksheet+xml"/>'
    '</Types>')
_ROOT_RELS = (
    f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG}/relationships">'
    f'<Relationship Id="rId1" Type="{_DOC_REL}/officeDocument" Target="xl/workbook.xml"/>'
    '</Relationships>')
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    f'xmlns:r="{_DOC_REL}">'
    '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WORKBOOK_RELS = (
    f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG}/relationships">'
    f'<Relationship Id="rId1" Type="{_DOC_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_DOC_REL}/sharedStrings" Target="sharedStrings.xml"/>'
    '</Relationships>')
_SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _cell(ref: str, value: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'


def _sheet(rows: dict[int, str], prolog: str = "") -> str:
    body = "".join(f'<row r="{r}">{cells}</row>' for r, cells in rows.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
            f'<worksheet xmlns="{_SHEET_NS}"><sheetData>{body}</sheetData></worksheet>')


def _raw_xlsx(path: Path, sheet: str, *, shared_strings: Callable | None = None,
              extra_entries: int = 0) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
        if shared_strings is not None:
            with archive.open("xl/sharedStrings.xml", "w") as part:
                shared_strings(part)
        for i in range(extra_entries):
            archive.writestr(f"xl/media/pad{i}.bin", b"")


_HEADER_AND_ROW = {1: _cell("A1", "id") + _cell("B1", "text"),
                   2: _cell("A2", "1") + _cell("B2", "first")}


def _far_away_cell_xlsx(path: Path) -> None:
    # One cell at row 10^12: read-only openpyxl would yield empty rows up to it.
    _raw_xlsx(path, _sheet({**_HEADER_AND_ROW, 1_000_000_000_000: _cell("A1000000000000", "x")}))


def _sparse_xlsx(path: Path) -> None:
    # Rows far apart, but fewer blank rows between them than the cap.
    _raw_xlsx(path, _sheet({**_HEADER_AND_ROW, 50_000: _cell("B50000", "far")}))


def _huge_shared_strings_xlsx(path: Path) -> None:
    # 101 MB of distinct strings that compress only about 2 to 1: no zip bomb, just too big.
    def write(part) -> None:
        part.write(f'<?xml version="1.0"?><sst xmlns="{_SHEET_NS}">'.encode())
        for _ in range(101):
            part.write(b"".join(b"<si><t>%s</t></si>" % os.urandom(10).hex().encode()
                                for _ in range(MB // 35)))
        part.write(b"</sst>")

    _raw_xlsx(path, _sheet(_HEADER_AND_ROW), shared_strings=write)


def _doctype_entities_xlsx(path: Path) -> None:
    # A billion-laughs DOCTYPE: each entity ten of the one before.
    entities = '<!ENTITY l0 "ha">' + "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    prolog = f"<!DOCTYPE worksheet [{entities}]>"
    _raw_xlsx(path, _sheet({1: _cell("A1", "text"), 2: _cell("A2", "&l9;")}, prolog))


def _zip_entries_xlsx(path: Path) -> None:
    _raw_xlsx(path, _sheet(_HEADER_AND_ROW), extra_entries=100_000)


def _formulas_without_values_xlsx(path: Path) -> None:
    # Written by a program that stores formulas but not their results (Excel stores both).
    _raw_xlsx(path, _sheet({
        1: _cell("A1", "n") + _cell("B1", "double"),
        2: _cell("A2", "2") + '<c r="B2"><f>A2*2</f></c>',
    }))


BUILDERS: dict[str, Callable[[Path], None]] = {
    "normal.xlsx": _normal_xlsx,
    "two_sheets.xlsx": _two_sheets_xlsx,
    "empty_sheet.xlsx": _empty_sheet_xlsx,
    "messy.xlsx": _messy_xlsx,
    "wide_row.xlsx": _wide_row_xlsx,
    "blank_header.xlsx": _blank_header_xlsx,
    "corrupt.xlsx": _corrupt_xlsx,
    "zip_bomb.xlsx": _zip_bomb_xlsx,
    "zip_not_xlsx.xlsx": _zip_not_xlsx,
    "legacy.xls": _ole,
    "password_protected.xlsx": _ole,
    "image.png": _png,
    "png_renamed.csv": _png,
    "pdf_renamed.csv": _pdf,
    "nul_bytes.csv": _nul_bytes,
    "nul_late.csv": _nul_late,
    "utf16_bom.csv": _utf16,
    "utf16_be_bom.tsv": _utf16_be,
    "utf16_broken.csv": _utf16_broken,
    "cp1252_after_head.csv": _cp1252_late,
    "columns_10000.csv": _columns(10_000),
    "columns_10001.csv": _columns(10_001),
    "field_5mb.csv": _big_field(5 * MB),
    "field_12mb.csv": _big_field(12 * MB),
    "far_away_cell.xlsx": _far_away_cell_xlsx,
    "sparse.xlsx": _sparse_xlsx,
    "huge_shared_strings.xlsx": _huge_shared_strings_xlsx,
    "doctype_entities.xlsx": _doctype_entities_xlsx,
    "zip_entries_100k.xlsx": _zip_entries_xlsx,
    "formulas_without_values.xlsx": _formulas_without_values_xlsx,
}


def build(name: str, directory: Path) -> Path:
    path = directory / name
    if not path.exists():
        BUILDERS[name](path)
    return path


def xlsx_bytes(sheets: dict[str, list[list]]) -> io.BytesIO:
    """An in-memory workbook, for tests that build their own."""
    workbook = Workbook(write_only=True)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    buffer.seek(0)
    return buffer
