import csv
import hashlib
import io
import json
import re

import openpyxl
import pytest

from batches.exports import UnknownFormat, export_rows
from tests.helpers.api import orm_batch

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1", "-2", "@x", "\tcmd", "\rcmd"]


def ooxml_text(value: str) -> str:
    """Undo OOXML's _xHHHH_ escape (a carriage return is stored as _x000D_; Excel shows it as
    one, openpyxl's reader leaves it escaped)."""
    return re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m.group(1), 16)), value)


def read(batch, fmt, **kwargs) -> bytes:
    return b"".join(export_rows(batch, fmt, **kwargs).chunks)


def read_csv(batch, **kwargs) -> list[list[str]]:
    data = read(batch, "csv", **kwargs)
    assert data.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def read_xlsx(batch, **kwargs) -> list[tuple]:
    sheet = openpyxl.load_workbook(io.BytesIO(read(batch, "xlsx", **kwargs))).active
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f", f"{cell.coordinate} is a formula"
    return list(sheet.values)


def read_jsonl(batch, **kwargs) -> list[dict]:
    return [json.loads(line) for line in read(batch, "jsonl", **kwargs).decode().splitlines()]


@pytest.fixture
def formula_batch(user):
    rows = [{"text": f, "n": i} for i, f in enumerate(FORMULAS)]
    return orm_batch(user, rows, statuses=["succeeded"] * len(rows), outputs=FORMULAS)


def test_it_writes_csv_with_bom_header_and_rows_in_order(user):
    batch = orm_batch(user, [{"text": "a", "n": 1}, {"text": "b", "n": 2}],
                      statuses=["succeeded", "failed"], outputs=["A!", ""])
    rows = read_csv(batch)
    assert rows[0] == ["row", "text", "n", "output", "status", "error", "attempts",
                       "prompt_tokens", "output_tokens", "latency_ms", "thoughts_tokens", "cost"]
    assert rows[1] == ["1", "a", "1", "A!", "succeeded", "", "1", "3", "5", "12", "", ""]
    assert rows[2] == ["2", "b", "2", "", "failed", "boom", "1", "", "", "", "", ""]


def test_it_neutralises_formulas_in_csv_output_and_input(formula_batch):
    rows = read_csv(formula_batch)[1:]
    assert [r[1] for r in rows] == ["'" + f for f in FORMULAS]
    assert [r[3] for r in rows] == ["'" + f for f in FORMULAS]


def test_it_writes_formula_looking_text_as_plain_string_cells_in_xlsx(formula_batch):
    sheet = openpyxl.load_workbook(io.BytesIO(read(formula_batch, "xlsx"))).active
    cells = list(sheet.iter_rows(min_row=2))
    # String cells (data type "s"), never formulas ("f"), and the text is unchanged: "-2" is
    # still "-2", not "'-2".
    assert [ooxml_text(c[1].value) for c in cells] == FORMULAS
    assert [ooxml_text(c[3].value) for c in cells] == FORMULAS
    assert {c[1].data_type for c in cells} == {"s"} == {c[3].data_type for c in cells}
    assert [c[2].value for c in cells] == list(range(len(FORMULAS)))  # numbers stay numbers


@pytest.mark.parametrize("text", [" =1+1", "\u3000=1+1", "\uff1d1+1", "\uff0b1", "\uff0d1",
                                  "\uff20SUM(A1)", "\n=1"])
def test_csv_neutralises_leading_whitespace_and_full_width_triggers(user, text):
    batch = orm_batch(user, [{"text": text}], statuses=["succeeded"], outputs=[text])
    row = read_csv(batch)[1]
    assert row[1] == "'" + text and row[2] == "'" + text  # input, output (after row)


def test_it_writes_jsonl_verbatim(formula_batch):
    records = read_jsonl(formula_batch)
    assert [r["text"] for r in records] == FORMULAS
    assert [r["output"] for r in records] == FORMULAS
    assert records[0]["n"] == 0 and records[0]["prompt_tokens"] == 3


def test_it_neutralises_formula_looking_column_names(user):
    batch = orm_batch(user, [{"=cmd": "x"}], prompt_template="{{=cmd}}")
    assert read_csv(batch)[0][1] == "'=cmd"
    assert read_xlsx(batch)[0][1] == "=cmd"  # a string cell: Excel never evaluates it
    assert "=cmd" in read_jsonl(batch)[0]


def test_it_exports_a_running_batch_with_every_row_and_its_current_status(user):
    batch = orm_batch(user, [{"text": str(i)} for i in range(4)], status="running",
                      statuses=["succeeded", "running", "pending", "failed"],
                      outputs=["done", "", "", ""])
    records = read_jsonl(batch)
    assert [(r["text"], r["status"], r["output"]) for r in records] == [
        ("0", "succeeded", "done"), ("1", "running", ""), ("2", "pending", ""), ("3", "failed", "")]
    assert len(read_xlsx(batch)) == 5


def test_it_can_keep_only_some_statuses(user):
    batch = orm_batch(user, [{"text": str(i)} for i in range(4)],
                      statuses=["succeeded", "running", "pending", "failed"])
    records = read_jsonl(batch, statuses=["succeeded", "failed"])
    assert [r["text"] for r in records] == ["0", "3"]


def searched_batch(user, **fields):
    """Rows whose input or answer holds "wine" (0, 2 and 3), prompts rendered as the service
    renders them (SQLite searches the prompt, PostgreSQL the input values)."""
    texts = ["red wine", "green tea", "black tea", "a whale"]
    batch = orm_batch(user, [{"text": t} for t in texts],
                      statuses=["succeeded", "succeeded", "failed", "failed"],
                      outputs=['{"note": "dry"}', '{"note": "calm"}', '{"note": "wine"}',
                               '{"note": "wine oil"}'], **fields)
    for index, text in enumerate(texts):
        batch.results.filter(index=index).update(prompt=f"Say: {text}")
    return batch


def test_it_keeps_only_the_rows_a_search_finds_within_the_statuses(user):
    batch = searched_batch(user)
    assert [r["text"] for r in read_jsonl(batch, search="wine")] == [
        "red wine", "black tea", "a whale"]
    assert [r[1] for r in read_csv(batch, search="wine", statuses=["failed"])[1:]] == [
        "black tea", "a whale"]
    assert [r[1] for r in read_xlsx(batch, search="TEA")[1:]] == ["green tea", "black tea"]
    assert read_jsonl(batch, search="zebra") == []


def test_a_columns_batch_export_keeps_only_the_rows_a_search_finds(user):
    from batches import outputs

    schema = outputs.check_schema({"type": "object", "properties": {"note": {"type": "string"}}})
    batch = searched_batch(user, response_schema=schema)
    for index, note in enumerate(["dry", "calm", "wine", "wine oil"]):
        batch.results.filter(index=index).update(data={"note": note})
    assert [(r["input"]["text"], r["data"]) for r in read_jsonl(batch, search="wine")] == [
        ("red wine", {"note": "dry"}), ("black tea", {"note": "wine"}),
        ("a whale", {"note": "wine oil"})]
    rows = read_csv(batch, search="wine", statuses=["succeeded"])
    assert rows[0][:3] == ["row", "text", "note"] and rows[1:] == [
        ["1", "red wine", "dry", "succeeded", "", "", ""]]


def test_an_unsearched_export_reads_its_rows_without_searching(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    batch = searched_batch(user)
    with CaptureQueriesContext(connection) as unsearched:
        read(batch, "csv", search="")
    with CaptureQueriesContext(connection) as searched:
        read(batch, "csv", search="wine")
    plain, found = unsearched.captured_queries[-1]["sql"], searched.captured_queries[-1]["sql"]
    assert "LIKE" not in plain.upper() and "tsvector" not in plain
    assert "LIKE" in found.upper() or "tsvector" in found


def test_it_renames_result_columns_that_clash_with_input_columns(user):
    batch = orm_batch(user, [{"output": "mine", "status": "s"}], statuses=["succeeded"],
                      outputs=["model"])
    record = read_jsonl(batch)[0]
    assert record["output"] == "mine" and record["result_output"] == "model"
    assert record["status"] == "s" and record["result_status"] == "succeeded"


def test_it_writes_nested_input_values_as_json_text_in_csv(user):
    batch = orm_batch(user, [{"text": {"a": [1, 2]}, "flag": True}])
    assert read_csv(batch)[1][1:3] == ['{"a": [1, 2]}', "true"]
    assert read_jsonl(batch)[0]["text"] == {"a": [1, 2]}


def test_it_strips_characters_xlsx_cannot_hold(user):
    batch = orm_batch(user, [{"text": "a\x01b\x1bc"}], statuses=["succeeded"],
                      outputs=["x" * 40_000])
    row = read_xlsx(batch)[1]
    assert row[1] == "abc"
    assert len(row[2]) == 32_767


def test_it_streams_large_exports_in_several_chunks(user):
    rows = [{"text": hashlib.sha256(str(i).encode()).hexdigest()} for i in range(3000)]
    batch = orm_batch(user, rows)
    for fmt in ("csv", "jsonl", "xlsx"):
        chunks = list(export_rows(batch, fmt).chunks)
        assert len(chunks) > 1, fmt


def test_it_reads_nothing_until_the_export_is_iterated(user, django_assert_num_queries):
    batch = orm_batch(user, [{"text": "a"}])
    with django_assert_num_queries(0):
        export = export_rows(batch, "csv")
    assert b"".join(export.chunks).count(b"\n") == 2


def test_it_gives_a_safe_attachment_filename_and_content_type(user):
    batch = orm_batch(user, [{"text": "a"}], name='Évil "name"\r\n/../x')
    export = export_rows(batch, "xlsx")
    assert export.filename == f"batch-{batch.pk}-evil-name-x.xlsx"
    assert export.content_type.startswith("application/vnd.openxmlformats")
    assert export_rows(batch, "csv").content_type == "text/csv; charset=utf-8"


def test_it_rejects_an_unknown_format(user):
    batch = orm_batch(user, [{"text": "a"}])
    with pytest.raises(UnknownFormat):
        export_rows(batch, "pdf")


def test_an_unnamed_batch_is_exported_as_batch_and_its_id(user):
    batch = orm_batch(user, [{"text": "a"}], source_filename="")
    assert export_rows(batch, "csv").filename == f"batch-{batch.pk}.csv"
    batch.source_filename = "Leads 2024.xlsx"
    assert export_rows(batch, "csv").filename == f"batch-{batch.pk}-leads-2024.csv"


def test_the_first_column_is_the_rows_line_in_the_file(user):
    from batches.services import batch_create

    source = io.BytesIO(b'text,n\n"two\nlines",1\n\nafter a blank,2\n')
    batch = batch_create(owner=user, prompt="{{text}}", file=source, filename="t.csv")
    rows = read_csv(batch)
    assert rows[0][0] == "row"
    # The quoted field spans lines 2-3 and line 4 is blank: the rows are on lines 2 and 5.
    assert [r[0] for r in rows[1:]] == ["2", "5"]
    assert [r["row"] for r in read_jsonl(batch)] == [2, 5]
    assert [r[0] for r in read_xlsx(batch)[1:]] == [2, 5]


def test_rows_sent_as_json_are_numbered_from_one(user):
    rows = read_csv(orm_batch(user, [{"text": "a"}, {"text": "b"}]))
    assert [r[0] for r in rows[1:]] == ["1", "2"]


def test_a_row_column_in_the_file_keeps_its_name(user):
    record = read_jsonl(orm_batch(user, [{"row": "mine"}]))[0]
    assert record["row"] == "mine" and record["result_row"] == 1


def test_xlsx_has_a_frozen_header_and_an_autofilter_over_the_rows(user):
    batch = orm_batch(user, [{"text": str(i)} for i in range(3)])
    sheet = openpyxl.load_workbook(io.BytesIO(read(batch, "xlsx"))).active
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:K4"  # row, text and 9 result columns
