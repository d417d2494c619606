"""batches.ingest: formats, encodings, limits, and the precise errors users see."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batches.ingest import (
    MAX_COLUMNS,
    IngestError,
    Table,
    open_table,
    preview,
    table_from_rows,
)
from tests.helpers.ingest_corpus import BUILDERS, build, xlsx_bytes

FILES = Path(__file__).parent / "files"
MB = 1024 * 1024


def table(data: bytes, name: str = "rows.csv", **kwargs: Any) -> Table:
    return open_table(io.BytesIO(data), filename=name, **kwargs)


def rows(data: bytes, name: str = "rows.csv", **kwargs: Any) -> list[dict]:
    return list(table(data, name, **kwargs).rows)


def error(data: bytes, name: str = "rows.csv", **kwargs: Any) -> IngestError:
    """The IngestError raised by opening the file or by iterating its rows."""
    with pytest.raises(IngestError) as caught:
        list(table(data, name, **kwargs).rows)
    return caught.value


class Unseekable(io.RawIOBase):
    """A pipe-like stream with no size and no seek: `data`, then `repeat` forever."""

    def __init__(self, data: bytes = b"", repeat: bytes = b""):
        self.stream = io.BytesIO(data)
        self.repeat, self.offset, self.read_bytes = repeat, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        n = self.stream.readinto(buffer)
        if not n and self.repeat:
            copies = len(buffer) // len(self.repeat) + 2
            endless = self.repeat * copies
            chunk = endless[self.offset:self.offset + len(buffer)]
            self.offset = (self.offset + len(chunk)) % len(self.repeat)
            buffer[:len(chunk)] = chunk
            n = len(chunk)
        self.read_bytes += n
        return n


# The corpus: every file in tests/files plus the generated ones, and what each must give.

ABSENT = object()  # a cell the row does not store (rows are not padded)


@dataclass
class Ok:
    columns: list[str]
    count: int
    values: dict[tuple[int, str], Any] = field(default_factory=dict)
    delimiter: str | None = None
    encoding: str | None = None
    format: str | None = None
    warning: str | None = None
    sheet: str | None = None


@dataclass
class Fails:
    message: str
    line: int | None = None
    sheet: str | None = None


CORPUS: dict[str, Ok | Fails] = {
    "bom_utf8.csv": Ok(["name", "city"], 2, {(1, "city"): "New York"}, encoding="utf-8-sig"),
    "utf16_bom.csv": Ok(["name", "city"], 1, {(0, "city"): "Kraków"}, encoding="utf-16"),
    "utf16_be_bom.tsv": Ok(["id", "name"], 1, {(0, "name"): "東京"}, delimiter="\t"),
    "utf16_broken.csv": Fails("The file is not valid UTF-16: line 3 has bytes that cannot be "
                              "decoded", line=3),
    "cp1252.csv": Ok(["name", "quote"], 2, {(0, "name"): "José", (0, "quote"): "“Olé” – 5€"},
                     encoding="cp1252", warning="it was read as cp1252 (Windows-1252)"),
    "latin1.csv": Ok(["name", "code"], 1, {(0, "name"): "Renée", (0, "code"): "A\x81B"},
                     encoding="latin-1", warning="it was read as latin-1 (ISO-8859-1)"),
    "cp1252_after_head.csv": Ok(["id", "text"], 5001, {(5000, "text"): "café"},
                                warning="not valid UTF-8 from line 5002"),
    "semicolon.csv": Ok(["name", "price", "note"], 2,
                        {(0, "price"): "3,50", (0, "note"): "a; b"}, delimiter=";"),
    "tab.tsv": Ok(["id", "name"], 2, {(1, "name"): "Grace, Hopper"}, delimiter="\t"),
    "pipe.txt": Ok(["id", "name", "note"], 2, {(0, "note"): "x, y"}, delimiter="|"),
    "export.dat": Ok(["id", "name"], 1, {(0, "name"): "Ada"}, delimiter=";", format="csv"),
    "quoted_newlines.csv": Ok(["id", "text"], 3, {(0, "text"): "line one\nline two",
                                                 (1, "text"): "a\n\nb", (2, "text"): "plain"}),
    "quoted_newlines_then_long_row.csv": Fails("Line 6 has 4 fields but the header has 2 "
                                               "columns.", line=6),
    "doubled_quotes.csv": Ok(["id", "quote"], 2, {(0, "quote"): 'She said "hi"',
                                                 (1, "quote"): '"quoted" start'}),
    "crlf.csv": Ok(["a", "b"], 2, {(0, "b"): "x\r\ny", (1, "b"): "z"}),
    "cr_only.csv": Ok(["a", "b"], 2, {(1, "a"): "3", (1, "b"): "4"}),
    "no_trailing_newline.csv": Ok(["a", "b"], 2, {(1, "b"): "4"}),
    "ragged_short_rows.csv": Ok(["a", "b", "c"], 3, {(0, "b"): ABSENT, (0, "c"): ABSENT,
                                                     (1, "b"): "3", (2, "c"): "6"}),
    "long_row.csv": Fails("Line 3 has 5 fields but the header has 3 columns.", line=3),
    "trailing_empty_columns.csv": Ok(["name", "city"], 2, {(1, "city"): "Paris"}),
    "blank_lines.csv": Fails("Line 8 has 3 fields but the header has 2 columns.", line=8),
    "unclosed_quote.csv": Fails('Line 3 opens a quoted field (") that is never closed', line=3),
    "blank_header_cell.csv": Fails("Column 2 has no name in the header.", line=1),
    "duplicate_header.csv": Fails('The header has duplicate column names: "email" (columns '
                                  '1, 3); "name" (columns 2, 4).', line=1),
    "whitespace_header.csv": Ok(["name", "email"], 1, {(0, "email"): "ada@example.com"}),
    "single_column.csv": Ok(["text"], 2, {(0, "text"): "hello world"}),
    "header_only.csv": Ok(["name", "city"], 0),
    "empty.csv": Fails("The file is empty."),
    "whitespace_only.csv": Fails("The file has no header row: it contains only blank lines."),
    "formulas.csv": Ok(["name", "formula"], 4, {(0, "formula"): "=SUM(A1:A3)",
                                                (1, "formula"): "+cmd", (2, "formula"): "@SUM(1)",
                                                (3, "formula"): "-2+3"}),
    "control_chars.csv": Ok(["id", "text"], 4, {
        (0, "text"): "bell\x07here", (1, "text"): "esc\x1b[31mred", (2, "text"): "tab\there",
        (3, "text"): "vt\x0bff\x0c"}),
    "html_script.csv": Ok(["id", "html"], 2, {(0, "html"): "<script>alert(1)</script>",
                                              (1, "html"): "<b>bold</b> &amp; more"}),
    "unicode.csv": Ok(["name", "greeting"], 2, {(0, "greeting"): "こんにちは 👋",
                                                (1, "name"): "שרה"}),
    "columns_10000.csv": Ok([f"c{i}" for i in range(1, 10_001)], 1, {(0, "c10000"): "10000"}),
    "columns_10001.csv": Fails("The header has 10,001 columns; the limit is 10,000.", line=1),
    "field_5mb.csv": Ok(["id", "text"], 3, {(2, "text"): "after"}),
    "field_12mb.csv": Fails("Line 3 has a cell longer than 10 MB (the limit)", line=3),
    "nul_bytes.csv": Fails("This does not look like a CSV, XLSX or JSONL file (it starts with "
                           "binary data)."),
    "nul_late.csv": Fails("Line 301 contains a NUL character", line=301),
    "png_renamed.csv": Fails("This does not look like a CSV, XLSX or JSONL file (it is a PNG "
                             "image)."),
    "image.png": Fails("(it is a PNG image)"),
    "pdf_renamed.csv": Fails("(it is a PDF document)"),
    "html_export.xls": Fails("(it is an HTML or XML document)"),
    "legacy.xls": Fails("This is a legacy Excel .xls file"),
    "password_protected.xlsx": Fails("or a password-protected workbook"),
    "nested.jsonl": Ok(["id", "meta", "score", "ok", "none"], 2,
                       {(0, "meta"): {"tags": ["a", "b"]}, (0, "score"): 2.5, (0, "ok"): True,
                        (0, "none"): None, (1, "meta"): [1, 2], (1, "score"): ABSENT},
                       format="jsonl"),
    "blank_lines.ndjson": Ok(["q"], 2, {(1, "q"): "two"}, format="jsonl"),
    "records": Ok(["q"], 1, {(0, "q"): "sniffed as JSONL"}, format="jsonl"),
    "bad_line.jsonl": Fails("Line 3 is not valid JSON: Expecting property name enclosed in "
                            "double quotes (at character 9).", line=3),
    "non_object.jsonl": Fails("Line 2 is a JSON array, not an object.", line=2),
    "unknown_key.jsonl": Fails('Line 3 has the key "b", which the first line does not have.',
                               line=3),
    "array.json": Fails("This is a JSON array. Upload JSON Lines"),
    "normal.xlsx": Ok(["name", "age", "score", "joined", "seen", "active", "note"], 2,
                      {(0, "age"): "36", (0, "score"): "2.5", (0, "joined"): "2024-03-01",
                       (0, "seen"): "2024-03-01T14:30:00", (0, "active"): "TRUE",
                       (0, "note"): ABSENT, (1, "age"): "85", (1, "score"): "0.1",
                       (1, "active"): "FALSE"}, format="xlsx"),
    "two_sheets.xlsx": Ok(["total"], 1, {(0, "total"): "2"}),
    "two_sheets.xlsx:Data": Ok(["id", "text"], 2, {(1, "text"): "second"}, sheet="Data"),
    "two_sheets.xlsx:Nope": Fails("There is no sheet named 'Nope' in this workbook. Its sheets "
                                  "are: 'Summary', 'Data'.", sheet="Nope"),
    "empty_sheet.xlsx": Fails("The sheet 'Empty' is empty."),
    "messy.xlsx": Ok(["id", "text"], 2, {(0, "text"): "a", (1, "id"): "2", (1, "text"): ABSENT}),
    "wide_row.xlsx": Fails("Row 3 has a value in column D but the header has only 2 columns.",
                           line=3),
    "blank_header.xlsx": Fails("Column 2 (B) has no name in the header.", line=1),
    "corrupt.xlsx": Fails("This file is not a valid XLSX workbook: it is damaged"),
    "zip_bomb.xlsx": Fails("looks like a zip bomb"),
    "zip_not_xlsx.xlsx": Fails("This is a ZIP archive, not an XLSX workbook."),
    "far_away_cell.xlsx": Fails("The sheet has more than 100,000 empty rows (at row 100,003)",
                                line=100_003),
    "sparse.xlsx": Ok(["id", "text"], 2, {(0, "text"): "first", (1, "text"): "far",
                                          (1, "id"): ""}),
    "huge_shared_strings.xlsx": Fails("The workbook part xl/sharedStrings.xml unzips to "
                                      "103.9 MB (the limit is 100 MB)."),
    "doctype_entities.xlsx": Fails("This workbook contains XML entity declarations"),
    "zip_entries_100k.xlsx": Fails("This workbook has 100,005 parts (the limit is 10,000)"),
    "formulas_without_values.xlsx": Ok(["n", "double"], 1, {(0, "n"): "2", (0, "double"): ""}),
}


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ingest_corpus")


def corpus_file(name: str, generated: Path) -> Path:
    return FILES / name if (FILES / name).exists() else build(name, generated)


@pytest.mark.parametrize("case", CORPUS, ids=str)
def test_each_corpus_file_ingests_or_fails_as_expected(case: str, generated: Path) -> None:
    expected = CORPUS[case]
    path = corpus_file(case.split(":")[0], generated)
    with path.open("rb") as f:
        if isinstance(expected, Fails):
            with pytest.raises(IngestError) as caught:
                list(open_table(f, filename=path.name, sheet=expected.sheet).rows)
            assert expected.message in str(caught.value)
            assert caught.value.line == expected.line
            return
        result = open_table(f, filename=path.name, sheet=expected.sheet)
        got = list(result.rows)
    assert result.columns == expected.columns
    assert len(got) == expected.count
    for (index, column), value in expected.values.items():
        assert got[index].get(column, ABSENT) == value, (index, column)
    for attribute in ("delimiter", "encoding", "format"):
        if getattr(expected, attribute) is not None:
            assert getattr(result, attribute) == getattr(expected, attribute)
    if expected.warning:
        assert any(expected.warning in w for w in result.warnings), result.warnings
    else:
        assert result.warnings == []


def test_the_corpus_covers_every_file_and_every_generated_file() -> None:
    named = {case.split(":")[0] for case in CORPUS}
    committed = {path.name for path in FILES.iterdir()}
    assert committed | set(BUILDERS) == named
    assert len(named) >= 30


def test_a_five_megabyte_field_is_read_whole(generated: Path) -> None:
    with corpus_file("field_5mb.csv", generated).open("rb") as f:
        got = list(open_table(f, filename="field_5mb.csv").rows)
    assert len(got[1]["text"]) > 4 * MB
    assert got[1]["text"].startswith('ab,c"zzz')


# CSV structure and line numbers.

def test_it_names_the_line_of_a_row_with_too_many_fields() -> None:
    err = error(b"a,b,c\n1,2,3\n\n1,2,3\n1,2,3\n1,2,3\n4,5,6,7,8\n")
    assert str(err) == "Line 7 has 5 fields but the header has 3 columns."
    assert err.line == 7
    assert err.field == "file"


def test_it_counts_physical_lines_after_quoted_newlines() -> None:
    err = error(b'id,text\n1,"a\nb\nc"\n2,"d\r\ne"\n3,x,y\n')
    assert err.line == 7


def test_short_rows_are_stored_without_padding() -> None:
    assert rows(b"a,b,c\n1\n") == [{"a": "1"}]


def test_a_wide_header_does_not_expand_short_lines() -> None:
    header = ",".join(f"c{i}" for i in range(10_000)).encode()
    got = rows(header + b"\n" + b"x\n" * 20_000)
    assert len(got) == 20_000 and got[0] == {"c0": "x"}


def test_it_skips_fully_empty_lines_and_rows_of_empty_fields() -> None:
    assert rows(b"a,b\n\n1,2\n,\n  \n,,,,\n3,4\n") == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_it_drops_empty_fields_beyond_the_header_but_not_values() -> None:
    assert rows(b"a,b\n1,2,,\n") == [{"a": "1", "b": "2"}]
    assert error(b"a,b\n1,2,,x\n").line == 2


def test_it_strips_whitespace_around_column_names_but_not_values() -> None:
    result = table(b" a ,\tb\n x , y \n")
    assert result.columns == ["a", "b"]
    assert list(result.rows) == [{"a": " x ", "b": " y "}]


def test_it_says_one_column_not_one_columns() -> None:
    assert str(error(b"text\nhello, world\n")) == ("Line 2 has 2 fields but the header has "
                                                   "1 column.")


def test_it_names_a_blank_column_by_position() -> None:
    err = error(b"a,b, ,d\n1,2,3,4\n")
    assert str(err) == "Column 3 has no name in the header."


def test_it_names_the_header_line_when_blank_lines_come_first() -> None:
    assert str(error(b"\n\na,,c\n")) == "Column 2 has no name in the header (line 3)."


def test_it_names_every_duplicate_column() -> None:
    err = error(b"id,Name,id, Name \n")
    assert str(err) == ('The header has duplicate column names: "id" (columns 1, 3); "Name" '
                        "(columns 2, 4). Each column needs a unique name.")
    assert err.column == "id"


def test_it_rejects_an_empty_file() -> None:
    assert str(error(b"")) == "The file is empty."


def test_it_rejects_a_file_of_blank_lines() -> None:
    assert "no header row" in str(error(b"\n\r\n  \n"))
    assert str(error(b"\n\n", name="x.jsonl")) == "The file contains only blank lines."


def test_it_reports_an_unclosed_quote_at_the_end_of_the_file() -> None:
    err = error(b'a,b\n1,"open')
    assert err.line == 2
    assert "never closed" in str(err)


def test_it_reports_an_unclosed_quote_in_the_header() -> None:
    assert error(b'"a,b\n1,2\n').line == 1


def test_a_huge_field_error_names_the_line_where_the_field_starts() -> None:
    data = b'a,b\n1,2\n3,"' + (b"y" * 1023 + b"\n") * (11 * 1024) + b'"\n'
    err = error(data)
    assert err.line == 3
    assert "longer than 10 MB" in str(err)


def test_it_accepts_exactly_max_columns() -> None:
    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS)).encode()
    assert len(table(header + b"\n").columns) == MAX_COLUMNS
    assert "the limit is 10,000" in str(error(header + b",extra\n"))


# Delimiters.

@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_it_sniffs_the_delimiter(delimiter: str) -> None:
    text = delimiter.join(["name", "note", "n"]) + "\n"
    text += delimiter.join(["Ada", '"x, y; z | w"', "1"]) + "\n"
    result = table(text.encode(), name="upload.txt")
    assert result.delimiter == delimiter
    assert list(result.rows) == [{"name": "Ada", "note": "x, y; z | w", "n": "1"}]


def test_it_trusts_the_header_when_values_are_full_of_another_delimiter() -> None:
    data = b"id,text\n" + b"".join(b"%d,a;b;c;d;e|f\n" % i for i in range(50))
    assert table(data).delimiter == ","


def test_tsv_means_tab_even_when_commas_dominate() -> None:
    result = table(b"a,b\tc\n1,2\t3\n", name="x.tsv")
    assert result.delimiter == "\t"
    assert result.columns == ["a,b", "c"]


# Encodings.

def test_it_strips_the_utf8_bom_from_the_first_column() -> None:
    assert table(b"\xef\xbb\xbfid,name\n1,x\n").columns == ["id", "name"]


def test_it_reads_utf16_with_a_bom() -> None:
    result = table("id,name\n1,Zoë\n".encode("utf-16"))
    assert result.columns == ["id", "name"]
    assert list(result.rows) == [{"id": "1", "name": "Zoë"}]


def test_it_falls_back_to_cp1252_with_a_warning() -> None:
    result = table("a\nnaïve – “x”\n".encode("cp1252"))
    assert list(result.rows) == [{"a": "naïve – “x”"}]
    assert result.encoding == "cp1252"
    assert result.warnings == ["The file is not valid UTF-8; it was read as cp1252 "
                               "(Windows-1252). Check accented characters."]


def test_it_falls_back_to_latin1_when_cp1252_cannot_decode() -> None:
    result = table(b"a\n\xe9\x81\n")
    assert list(result.rows) == [{"a": "é\x81"}]
    assert result.encoding == "latin-1"
    assert "latin-1 (ISO-8859-1)" in result.warnings[0]


def test_it_switches_encoding_mid_stream_and_names_the_line() -> None:
    data = "a\nÜber\n".encode() + b"x\n" * 40_000 + "café\n".encode("cp1252")
    result = table(data)
    got = list(result.rows)
    assert got[0]["a"] == "Über"
    assert got[-1]["a"] == "café"
    assert result.encoding == "cp1252"
    assert result.warnings == ["The file is not valid UTF-8 from line 40003; from there it was "
                               "read as cp1252 (Windows-1252). Check accented characters."]


def test_a_multibyte_character_split_across_chunks_is_decoded_whole() -> None:
    data = b"a\n" + "é".encode() * 300_000 + b"\n"
    assert rows(data)[0]["a"] == "é" * 300_000


def test_a_crlf_split_across_chunks_counts_as_one_line_break() -> None:
    # Chunks are 64 KB (head) and 256 KB; put a \r\n across the first boundary.
    line = b"x" * 998 + b"\r\n"
    data = b"a\r\n" + b"y" * (64 * 1024 - 3 - 1) + b"\r\n" + line * 10 + b"1,2\r\n"
    err = error(data)
    assert err.line == 13


def test_it_rejects_undecodable_utf16_with_the_line() -> None:
    data = b"\xff\xfe" + "a\n1\n2\n".encode("utf-16-le") + b"\x00\xdcx\x00"
    err = error(data)
    assert err.line == 4
    assert str(err).startswith("The file is not valid UTF-16")


# Limits.

def test_it_stops_as_soon_as_row_max_rows_plus_one_is_seen() -> None:
    result = table(b"a\n" + b"x\n" * 10, max_rows=3)
    seen = []
    with pytest.raises(IngestError) as caught:
        for row in result.rows:
            seen.append(row)
    assert len(seen) == 3
    assert str(caught.value) == "The file has more than 3 rows (the limit is 3)."
    assert caught.value.line == 5


def test_the_row_limit_message_uses_thousands_separators() -> None:
    err = error(b"a\n" + b"x\n" * 200_001, max_rows=200_000)
    assert str(err) == "The file has more than 200,000 rows (the limit is 200,000)."
    assert err.line == 200_002


def test_exactly_max_rows_is_accepted() -> None:
    assert len(rows(b"a\n" + b"x\n" * 3, max_rows=3)) == 3


def test_it_rejects_an_oversized_seekable_file_before_reading_it() -> None:
    f = io.BytesIO(b"a\n" + b"x\n" * 1000)
    with pytest.raises(IngestError) as caught:
        open_table(f, filename="big.csv", max_bytes=1000)
    assert str(caught.value) == "The file is 2 KB; the limit is 1,000 bytes."


def test_it_trusts_the_size_of_an_uploaded_file() -> None:
    class Upload(io.BytesIO):
        size = 60 * MB

        def read(self, *args):
            raise AssertionError("read before checking the size")

    with pytest.raises(IngestError) as caught:
        open_table(Upload(b"a\n1\n"), filename="x.csv", max_bytes=50 * MB)
    assert str(caught.value) == "The file is 60 MB; the limit is 50 MB."


def test_it_stops_an_endless_stream_once_it_passes_max_bytes() -> None:
    stream = Unseekable(b"a,b\n", repeat=b"1," + b"x" * 100 + b"\n")
    result = open_table(stream, filename="pipe.csv", max_bytes=2 * MB)
    with pytest.raises(IngestError) as caught:
        for _ in result.rows:
            pass
    assert str(caught.value) == "The file is larger than 2 MB (the limit)."
    assert stream.read_bytes <= 2 * MB + 256 * 1024


def test_it_reads_an_unseekable_stream() -> None:
    stream = Unseekable(b"a,b\n1,2\n3,4\n")
    assert list(open_table(stream, filename="pipe.csv").rows) == [{"a": "1", "b": "2"},
                                                                   {"a": "3", "b": "4"}]


def test_it_reads_an_unseekable_xlsx_stream_by_spooling_it() -> None:
    data = xlsx_bytes({"S": [["a"], [1]]}).getvalue()
    assert list(open_table(Unseekable(data), filename="x.xlsx").rows) == [{"a": "1"}]


def test_it_counts_the_bytes_of_an_unseekable_xlsx_stream() -> None:
    data = xlsx_bytes({"S": [["a"], [1]]}).getvalue()
    with pytest.raises(IngestError):
        open_table(Unseekable(data), filename="x.xlsx", max_bytes=len(data) - 1)


def test_a_seekable_file_is_read_from_its_start_every_time() -> None:
    f = io.BytesIO(b"a\n1\n2\n")
    preview(f, filename="x.csv")
    assert list(open_table(f, filename="x.csv").rows) == [{"a": "1"}, {"a": "2"}]


def test_limits_come_from_django_settings_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.BATCH_MAX_ROWS  # noqa: B018
    except ImproperlyConfigured:
        pytest.skip("Django settings are not configured")
    monkeypatch.setattr(settings, "BATCH_MAX_ROWS", 2)
    monkeypatch.setattr(settings, "BATCH_MAX_UPLOAD_MB", 1)
    assert "more than 2 rows" in str(error(b"a\n1\n2\n3\n"))
    assert "the limit is 1 MB" in str(error(b"a\n" + b"x" * (2 * MB)))


# Binary and non-tabular input.

def test_a_zip_named_csv_is_read_as_the_workbook_it_is() -> None:
    data = xlsx_bytes({"S": [["a"], ["x"]]}).getvalue()
    assert rows(data, name="really.csv") == [{"a": "x"}]


def test_a_text_file_named_xlsx_is_rejected_with_a_hint() -> None:
    assert "rename it to .csv" in str(error(b"a,b\n1,2\n", name="x.xlsx"))


def test_mostly_control_bytes_count_as_binary() -> None:
    assert "binary data" in str(error(bytes(range(1, 9)) * 50))


def test_it_refuses_a_text_mode_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    with path.open() as f, pytest.raises(TypeError):
        open_table(f, filename="x.csv")


# JSONL.

def test_jsonl_keeps_json_types_and_leaves_missing_keys_out() -> None:
    data = b'{"a": 1, "b": {"c": [1, null]}}\n{"b": "x"}\n{"a": false, "b": null}\n'
    assert rows(data, name="x.jsonl") == [
        {"a": 1, "b": {"c": [1, None]}}, {"b": "x"}, {"a": False, "b": None},
    ]


def test_jsonl_names_the_line_and_key_that_the_first_object_lacks() -> None:
    err = error(b'{"a": 1}\n{"a": 2}\n\n{"a": 3, "zz": 4}\n', name="x.jsonl")
    assert err.line == 4
    assert err.column == "zz"
    assert str(err).startswith('Line 4 has the key "zz", which the first line does not have.')


@pytest.mark.parametrize(("line", "kind"), [
    ('"text"', "a JSON string"), ("3", "a JSON number"), ("true", "a JSON boolean"),
    ("null", "null"), ("[]", "a JSON array"),
])
def test_jsonl_names_what_a_non_object_line_is(line: str, kind: str) -> None:
    err = error(b'{"a": 1}\n' + line.encode() + b"\n", name="x.jsonl")
    assert str(err).startswith(f"Line 2 is {kind}, not an object.")


def test_jsonl_rejects_nan_and_infinity() -> None:
    assert str(error(b'{"a": NaN}\n', name="x.jsonl")) == ("Line 1 is not valid JSON: NaN is "
                                                          "not allowed.")


def test_jsonl_rejects_a_blank_key_and_an_empty_first_object() -> None:
    assert str(error(b'{" ": 1}\n', name="x.jsonl")) == 'Line 1 has a key with no name (" ").'
    assert "is an empty object" in str(error(b"\n{}\n", name="x.jsonl"))


def test_jsonl_rejects_absurd_nesting_cleanly() -> None:
    err = error(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", name="x.jsonl")
    assert "nested too deeply" in str(err)


def test_jsonl_strips_keys_like_column_names() -> None:
    result = table(b'{" a ": 1}\n{"a": 2}\n{" a ": 3}\n', name="x.jsonl")
    assert result.columns == ["a"]
    assert [row["a"] for row in result.rows] == [1, 2, 3]


def test_jsonl_respects_max_rows() -> None:
    err = error(b'{"a": 1}\n' * 4, name="x.jsonl", max_rows=3)
    assert err.line == 4


# XLSX.

def test_xlsx_respects_max_rows() -> None:
    data = xlsx_bytes({"S": [["a"]] + [[i] for i in range(5)]}).getvalue()
    err = error(data, name="x.xlsx", max_rows=4)
    assert str(err) == "The file has more than 4 rows (the limit is 4)."
    assert err.line == 6


def test_xlsx_sheet_errors_point_at_the_sheet_field(generated: Path) -> None:
    with corpus_file("two_sheets.xlsx", generated).open("rb") as f:
        with pytest.raises(IngestError) as caught:
            open_table(f, filename="x.xlsx", sheet="Nope")
    assert caught.value.field == "sheet"


def test_xlsx_unzipped_size_is_capped_relative_to_the_upload_limit() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"<x/>" * (MB // 4) * 3)
    err = error(buffer.getvalue(), name="x.xlsx", max_bytes=100 * 1024)
    assert str(err).startswith("This workbook would unzip to 3 MB (the limit is 2 MB)")


def test_xlsx_whole_numbers_lose_the_point_zero_and_other_floats_read_as_repr() -> None:
    # openpyxl writes 15 significant digits, like Excel shows; the reader keeps what is stored.
    data = xlsx_bytes({"S": [["n"], [42], [-3.0], [2.5], [1e20], [12345678901234567890]]})
    assert [row["n"] for row in rows(data.getvalue(), name="x.xlsx")] == [
        "42", "-3", "2.5", "1e+20", "1.234567890123457e+19",
    ]


# Preview.

def test_preview_returns_the_header_and_first_rows_without_reading_everything() -> None:
    stream = Unseekable(b"a,b\n" + b"1,2\n" * 3_000_000)
    result, first = preview(stream, filename="x.csv", limit=2)
    assert result.columns == ["a", "b"]
    assert first == [{"a": "1", "b": "2"}] * 2
    assert stream.read_bytes <= 64 * 1024 + 256 * 1024


def test_preview_of_an_xlsx_closes_the_workbook(generated: Path) -> None:
    with corpus_file("normal.xlsx", generated).open("rb") as f:
        result, first = preview(f, filename="normal.xlsx", limit=1)
    assert result.format == "xlsx"
    assert first[0]["name"] == "Ada"


def test_preview_raises_header_errors() -> None:
    with pytest.raises(IngestError, match="duplicate"):
        preview(io.BytesIO(b"a,a\n"), filename="x.csv")


# Rows from the JSON API.

def test_table_from_rows_takes_the_union_of_keys_in_first_seen_order() -> None:
    result = table_from_rows([{"b": 1, "a": {"x": 1}}, {"c": None, "a": 2}])
    assert result.columns == ["b", "a", "c"]
    assert list(result.rows) == [{"b": 1, "a": {"x": 1}}, {"c": None, "a": 2}]


@pytest.mark.parametrize(("given", "message"), [
    ([], "There are no rows"),
    ([{"a": 1}, "x"], "rows[1] is a JSON string; each row must be an object"),
    ([{"a": 1}, {}], "rows[1] is an empty object"),
    ([{"a": 1, " ": 2}], "rows[0] has a key with no name (' ')."),
    ([{"a": 1, " a": 2}], 'rows[0] has the key "a" twice.'),
])
def test_table_from_rows_validates_like_a_file(given: list, message: str) -> None:
    with pytest.raises(IngestError) as caught:
        table_from_rows(given)
    assert message in str(caught.value)
    assert caught.value.field == "rows"


def test_table_from_rows_respects_max_rows() -> None:
    with pytest.raises(IngestError, match=r"more than 2 rows \(the limit is 2\)"):
        table_from_rows([{"a": 1}] * 3, max_rows=2)
