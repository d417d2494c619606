"""The fast insert of a batch's new rows (COPY on PostgreSQL, executemany on SQLite) stores
exactly what the ORM would: every field, every awkward character."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from batches import row_insert, services
from batches.models import Batch, BatchResult

pytestmark = [pytest.mark.django_db, pytest.mark.database]

AWKWARD = "tab\there, new\nline, cr\r, back\\slash, \\N, quote \"'’, ünïcödé 🙂, <b>&amp;"


@pytest.fixture
def batch():
    owner = get_user_model().objects.create_user("inserter")
    return Batch.objects.create(owner=owner, name="b", prompt_template="{{a}}", columns=["a"])


def _stored(batch: Batch) -> list[dict]:
    return [model_to_dict(r, exclude=["id", "batch"])
            for r in BatchResult.objects.filter(batch=batch).order_by("index")]


def test_rows_match_what_the_orm_stores_field_by_field(batch):
    rows = [
        (0, 2, {"a": AWKWARD, "n": 1.5, "nested": {"x": [1, None, True]}}, AWKWARD, "", []),
        (1, None, {"a": ""}, "", AWKWARD[:255], [4, 7]),
        (2, 4, {}, "plain", "key", []),
    ]
    assert row_insert.insert_rows(batch, rows) == 3
    other = Batch.objects.create(owner=batch.owner, name="orm", prompt_template="{{a}}")
    BatchResult.objects.bulk_create(
        BatchResult(batch=other, index=i, source_line=line, input=data, prompt=prompt,
                    conversation_key=key, document_ids=docs)
        for i, line, data, prompt, key, docs in rows)

    fast, orm = _stored(batch), _stored(other)
    assert fast == orm
    assert fast[0]["input"]["a"] == AWKWARD and fast[0]["prompt"] == AWKWARD
    assert fast[1]["source_line"] is None and fast[1]["document_ids"] == [4, 7]
    assert {r["status"] for r in fast} == {BatchResult.Status.PENDING}


def test_an_input_given_as_json_text_is_stored_as_that_json(batch):
    value = {"a": AWKWARD, "n": 1.5, "nested": {"x": [1, None, True]}}
    text = json.dumps(value, ensure_ascii=False)
    row_insert.insert_rows(batch, [(0, 2, row_insert.JsonText(text), "p", "", [])])
    assert BatchResult.objects.get(batch=batch).input == value


def test_an_upload_stores_each_rows_values_as_the_file_has_them(batch):
    upload = services.batch_create(owner=batch.owner, prompt="Say {{a}}", file=_csv(
        'a,b\n"tab\there, new\nline, back\\slash, \\N",ünïcödé 🙂\n"""quoted""",\n'),
        filename="awkward.csv")
    stored = list(upload.results.order_by("index").values_list("input", "prompt"))
    assert stored == [
        ({"a": "tab\there, new\nline, back\\slash, \\N", "b": "ünïcödé 🙂"},
         "Say tab\there, new\nline, back\\slash, \\N"),
        ({"a": '"quoted"', "b": ""}, 'Say "quoted"'),
    ]


def test_an_upload_of_many_rows_is_stored_in_order_with_its_lines(batch):
    lines = ["a"] + [f"value {i}\\" for i in range(12_345)]
    upload = services.batch_create(owner=batch.owner, prompt="Say {{a}}",
                                   file=_csv("\n".join(lines)), filename="many.csv")
    stored = list(upload.results.order_by("index").values_list("index", "source_line", "input",
                                                                "prompt"))
    assert len(stored) == 12_345
    assert stored[0] == (0, 2, {"a": "value 0\\"}, "Say value 0\\")
    assert stored[-1] == (12_344, 12_346, {"a": "value 12344\\"}, "Say value 12344\\")
    assert [i for i, *_ in stored] == list(range(12_345))


def test_a_failing_insert_leaves_no_row(batch):
    rows = [(0, 2, {"a": "x"}, "x", "", []), (0, 3, {"a": "y"}, "y", "", [])]  # index twice
    with pytest.raises(IntegrityError), transaction.atomic():
        row_insert.insert_rows(batch, rows)
    assert not BatchResult.objects.filter(batch=batch).exists()


def _csv(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def test_rows_read_from_a_query_on_the_same_connection_go_in_several_chunks(batch, monkeypatch):
    # A new version copies its rows from a server-side cursor on the same connection, which can
    # run nothing else while a COPY is open.
    monkeypatch.setattr(row_insert, "CHUNK", 3)
    row_insert.insert_rows(batch, [(i, i + 2, {"a": str(i)}, f"p{i}", "", []) for i in range(7)])
    copy = Batch.objects.create(owner=batch.owner, name="copy", prompt_template="{{a}}")
    source = (batch.results.order_by("index")
              .values_list("index", "source_line", "input", "prompt", "conversation_key",
                           "document_ids").iterator(chunk_size=2))
    with transaction.atomic():
        assert row_insert.insert_rows(copy, source) == 7
    assert _stored(copy) == _stored(batch)


def test_it_inserts_with_debug_on_as_in_development(batch, settings):
    # DEBUG on (make run, make demo) wraps the cursor in Django's debug wrapper, whose COPY
    # takes its arguments by position only.
    settings.DEBUG = True
    assert row_insert.insert_rows(batch, [(0, 2, {"a": "x"}, "x", "", [])]) == 1
    assert batch.results.get().input == {"a": "x"}
