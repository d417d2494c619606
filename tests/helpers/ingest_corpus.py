"""Binary and huge files for the ingest corpus, generated at test time instead of committed.

build(name, directory) writes the file called `name` into `directory` and returns its path.
"""

from __future__ import annotations

import datetime as dt
import io
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
