"""The streamed XLSX writer: what a spreadsheet reader sees, and that bytes leave before the end."""

import datetime
import io
import zipfile

import openpyxl
import pytest

from batches.xlsx_stream import column_letter, xlsx_chunks


def workbook(headers, rows):
    return openpyxl.load_workbook(io.BytesIO(b"".join(xlsx_chunks("Results", headers, rows))))


def test_cells_keep_their_types():
    day = datetime.date(2026, 11, 29)
    sheet = workbook(["text", "int", "float", "bool", "date", "blank"],
                     [["a & <b>", 42, 2.5, True, day, None],
                      ["  padded  ", -7, float("inf"), False, datetime.datetime(2026, 1, 2, 3), ""]]
                     ).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("text", "int", "float", "bool", "date", "blank")
    assert rows[1] == ("a & <b>", 42, 2.5, True, datetime.datetime(2026, 11, 29), None)
    assert rows[2] == ("  padded  ", -7, "inf", False, datetime.datetime(2026, 1, 2), None)
    assert sheet["E2"].number_format == "yyyy\\-mm\\-dd"
    assert sheet["A1"].font.b and not sheet["A2"].font.b


def test_text_is_never_a_formula_and_escapes_round_trip():
    texts = ["=1+1", "@SUM(A1)", "line\r\nbreak", "_x000D_ literal", "tab\there"]
    sheet = workbook(["t"], [[t] for t in texts]).active
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    assert [c.data_type for c in cells] == ["s"] * len(texts)
    assert [openpyxl.utils.escape.unescape(c.value) for c in cells] == texts


def test_header_is_frozen_and_the_autofilter_covers_every_row():
    sheet = workbook(["a", "b", "c"], [[i, i, i] for i in range(30)]).active
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:C31"


def test_bytes_are_sent_before_the_last_row_is_read():
    read = 0

    def rows():
        nonlocal read
        for i in range(100_000):
            read += 1
            yield [i, f"row {i} with some text to fill the sheet"]

    chunks = xlsx_chunks("Results", ["n", "text"], rows())
    first = next(chunks)
    assert first.startswith(b"PK")  # a ZIP's local header
    assert read < 100_000
    rest = b"".join(chunks)
    assert read == 100_000
    with zipfile.ZipFile(io.BytesIO(first + rest)) as book:
        assert book.testzip() is None
        assert "xl/worksheets/sheet1.xml" in book.namelist()


def test_an_empty_sheet_is_still_a_workbook():
    sheet = workbook(["only"], []).active
    assert list(sheet.iter_rows(values_only=True)) == [("only",)]


@pytest.mark.parametrize("index,letters", [(0, "A"), (25, "Z"), (26, "AA"), (701, "ZZ"),
                                            (702, "AAA")])
def test_column_letters(index, letters):
    assert column_letter(index) == letters


def test_a_value_no_cell_can_hold_is_refused():
    with pytest.raises(TypeError, match="cannot hold"):
        b"".join(xlsx_chunks("Results", ["x"], [[object()]]))
