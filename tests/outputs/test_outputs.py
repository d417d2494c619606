import datetime
import json

import pytest

from batches import outputs
from batches.outputs import AnswerMismatch, OutputSchemaError

REVIEW_FIELDS = [
    {"name": "sentiment", "type": "enum", "values": ["positive", "mixed", "negative"]},
    {"name": "score", "type": "integer", "description": "1 to 5"},
    {"name": "reasons", "type": "list"},
    {"name": "reviewed_on", "type": "date", "required": False},
]


def review_schema():
    return outputs.fields_to_schema(outputs.parse_fields(REVIEW_FIELDS))


def error_of(fn, *args) -> str:
    with pytest.raises(OutputSchemaError) as caught:
        fn(*args)
    return str(caught.value)


def test_fields_become_a_json_schema_with_one_property_per_field_in_order():
    schema = review_schema()
    assert list(schema["properties"]) == ["sentiment", "score", "reasons", "reviewed_on"]
    assert schema["properties"]["sentiment"] == {"type": "string",
                                                 "enum": ["positive", "mixed", "negative"]}
    assert schema["properties"]["score"] == {"type": "integer", "description": "1 to 5"}
    assert schema["properties"]["reasons"] == {"type": "array", "items": {"type": "string"}}
    assert schema["properties"]["reviewed_on"] == {"type": "string", "format": "date"}
    assert schema["required"] == ["sentiment", "score", "reasons"]


def test_the_column_order_survives_a_database_that_reorders_object_keys():
    schema = review_schema()
    assert schema["propertyOrdering"] == ["sentiment", "score", "reasons", "reviewed_on"]
    # PostgreSQL's jsonb sorts an object's keys (shortest first); the list keeps the order.
    scrambled = {**schema, "properties": dict(sorted(schema["properties"].items(),
                                                     key=lambda kv: (len(kv[0]), kv[0])))}
    assert [f.name for f in outputs.fields_from_schema(scrambled)] == [
        "sentiment", "score", "reasons", "reviewed_on"]
    nested = outputs.check_schema({"type": "object", "properties": {
        "b": {"type": "object", "properties": {"y": {}, "x": {}}}, "a": {}}})
    assert nested["propertyOrdering"] == ["b", "a"]
    assert nested["properties"]["b"]["propertyOrdering"] == ["y", "x"]
    bad = {"type": "object", "properties": {"a": {}, "b": {}}, "propertyOrdering": ["a"]}
    assert error_of(outputs.check_schema, bad) == (
        "response_schema.propertyOrdering: must list every property exactly once")


def test_the_columns_read_back_from_a_schema_are_the_fields_it_was_made_from():
    assert outputs.fields_from_schema(review_schema()) == outputs.parse_fields(REVIEW_FIELDS)
    assert outputs.fields_from_schema(None) == []


@pytest.mark.parametrize("fields, expected", [
    ([{"name": "a", "type": "strng"}], "output_fields[0].type: unknown type 'strng'"),
    ([{"name": "a", "type": "enum", "values": []}],
     "output_fields[0].values: a one-of field needs at least one value"),
    ([{"name": "a"}, {"name": "b"}, {"name": "a", "type": "integer"}],
     "output_fields[2].name: duplicate name 'a' (also output_fields[0])"),
    ([{"name": "2nd"}], "output_fields[0].name: '2nd' is not a usable name"),
    ([{"name": f"f{i}"} for i in range(101)], "output_fields: 101 fields; the limit is 100"),
    ([], "output_fields: define at least one field"),
    ([{"name": "a", "type": "text", "values": ["x"]}],
     "output_fields[0].values: only a one-of field has values"),
    ([{"name": "a", "required": "yes"}], "output_fields[0].required: must be true or false"),
])
def test_bad_fields_are_refused_naming_the_field_path(fields, expected):
    assert error_of(outputs.parse_fields, fields).startswith(expected)


def nested(levels: int) -> dict:
    node: dict = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"inner": node}}
    return node


@pytest.mark.parametrize("schema, expected", [
    ({"type": "object", "properties": {"a": {"type": "strng"}}},
     "response_schema.properties.a.type: unknown type 'strng'"),
    ({"type": "object", "properties": {"a": {"type": "string", "enum": []}}},
     "response_schema.properties.a.enum: an enum needs at least one value"),
    ({"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(101)}},
     "response_schema: 101 fields; the limit is 100"),
    (nested(6), "response_schema.properties.inner.properties.inner.properties.inner."
                "properties.inner.properties.inner: nested more than 5 levels deep"),
    ({"type": "object", "properties": {"a": {"type": "string", "description": "x" * 52_000}}},
     "response_schema: the schema is 51 KB; the limit is 50 KB"),
    ({"type": "array", "items": {"type": "string"}}, "response_schema: the top level must be"),
    ({"type": "object", "properties": {"a": {}}, "required": ["a", "a"]},
     "response_schema.required: 'a' is listed twice"),
    ({"type": "object", "properties": {"a": {"type": "string", "minLength": "two"}}},
     "response_schema.properties.a.minLength: not a valid JSON Schema"),
])
def test_a_schema_over_the_limits_is_refused_naming_the_problem(schema, expected):
    assert error_of(outputs.check_schema, schema).startswith(expected)


def test_five_levels_of_nesting_are_allowed():
    assert outputs.check_schema(nested(5))


def test_a_schema_written_as_text_may_not_repeat_a_name():
    text = '{"type": "object", "properties": {"a": {"type": "string"}, "a": {"type": "integer"}}}'
    assert error_of(outputs.loads_schema, text) == "response_schema: the name 'a' appears twice"
    assert error_of(outputs.loads_schema, "{oops").startswith("response_schema: not valid JSON")


def test_an_output_field_may_not_have_the_name_of_an_input_column():
    message = error_of(outputs.check_names, ["sentiment", "review"], ["product", "review"])
    assert message.startswith("output_fields[1].name: the output field 'review' has the name")


def test_a_matching_answer_gives_its_data():
    answer = '{"sentiment": "mixed", "score": 3, "reasons": ["fit", "price"]}'
    assert outputs.check_answer(answer, review_schema()) == {
        "sentiment": "mixed", "score": 3, "reasons": ["fit", "price"]}
    fenced = "```json\n" + answer + "\n```"
    assert outputs.check_answer(fenced, review_schema())["score"] == 3


@pytest.mark.parametrize("answer, expected", [
    ('{"sentiment": "mixed", "score": 3', "output did not match the schema: $: the answer is "
                                          "not valid JSON (Expecting ',' delimiter"),
    ('{"sentiment": "meh", "score": 3, "reasons": []}',
     "output did not match the schema: $.sentiment: 'meh' is not one of"),
    ('{"sentiment": "mixed", "score": "3", "reasons": []}',
     "output did not match the schema: $.score: '3' is not of type 'integer'"),
    ('{"sentiment": "mixed", "reasons": []}',
     "output did not match the schema: $: 'score' is a required property"),
    ('{"sentiment": "mixed", "score": 3, "reasons": [], "reviewed_on": "2024-13-40"}',
     "output did not match the schema: $.reviewed_on: '2024-13-40' is not a 'date'"),
])
def test_a_mismatching_answer_names_the_path_and_the_reason(answer, expected):
    with pytest.raises(AnswerMismatch) as caught:
        outputs.check_answer(answer, review_schema())
    assert caught.value.message.startswith(expected)
    note = outputs.repair_note(caught.value)
    assert caught.value.path in note and "JSON" in note


def test_cli_field_specs_read_name_type_values_and_description():
    specs = ["sentiment:enum(positive,mixed,negative)", "score:integer:1 to 5",
             "reasons:list", "note?:text:anything: else"]
    fields = outputs.parse_fields([outputs.parse_field_spec(s) for s in specs])
    assert [(f.name, f.kind, f.values, f.description, f.required) for f in fields] == [
        ("sentiment", "enum", ("positive", "mixed", "negative"), "", True),
        ("score", "integer", (), "1 to 5", True),
        ("reasons", "list", (), "", True),
        ("note", "text", (), "anything: else", False),
    ]
    assert (fields[1].minimum, fields[1].maximum, fields[1].label) == (1, 5, "integer (1 to 5)")
    assert error_of(outputs.parse_field_spec, "score").startswith("--field: 'score': write")


@pytest.mark.parametrize("field, expected", [
    ({"name": "n", "type": "integer", "values": "1 to 5"}, {"minimum": 1, "maximum": 5}),
    ({"name": "n", "type": "number", "minimum": 0.5}, {"minimum": 0.5}),
    ({"name": "n", "type": "integer", "values": "-3..3"}, {"minimum": -3, "maximum": 3}),
])
def test_a_number_field_may_have_a_range(field, expected):
    schema = outputs.fields_to_schema(outputs.parse_fields([field]))
    prop = schema["properties"]["n"]
    assert {k: prop[k] for k in ("minimum", "maximum") if k in prop} == expected
    assert outputs.fields_from_schema(schema) == outputs.parse_fields([field])


@pytest.mark.parametrize("field, expected", [
    ({"name": "n", "type": "integer", "values": "5 to 1"},
     "output_fields[0].maximum: the range 5 to 1 is empty"),
    ({"name": "n", "type": "integer", "values": "lots"},
     "output_fields[0].values: 'lots' is not a range"),
    ({"name": "n", "type": "integer", "minimum": 1.5}, "output_fields[0].minimum: must be a whole"),
    ({"name": "n", "type": "text", "maximum": 3},
     "output_fields[0].maximum: only an integer or number field has a range"),
])
def test_a_bad_range_is_refused(field, expected):
    assert error_of(outputs.parse_fields, [field]).startswith(expected)


def test_summaries_count_values_and_give_min_median_max():
    fields = outputs.parse_fields(REVIEW_FIELDS + [{"name": "ok", "type": "boolean"}])
    rows = [
        {"sentiment": "positive", "score": 5, "reasons": ["fit", "price"], "ok": True},
        {"sentiment": "positive", "score": 4, "reasons": ["fit"], "ok": True,
         "reviewed_on": "2024-03-01"},
        {"sentiment": "negative", "score": 1, "reasons": [], "ok": False,
         "reviewed_on": "2023-12-31"},
    ]
    by_name = {s.name: s for s in outputs.summarise(fields, rows)}
    assert by_name["sentiment"].counts == [("positive", 2), ("mixed", 0), ("negative", 1)]
    score = by_name["score"]
    assert (score.minimum, score.median, score.maximum, score.filled) == (1, 4, 5, 3)
    assert by_name["reasons"].counts == [("fit", 2), ("price", 1)]  # the top 3
    assert by_name["ok"].counts == [("true", 2), ("false", 1)]
    assert (by_name["reviewed_on"].first, by_name["reviewed_on"].last) == ("2023-12-31",
                                                                          "2024-03-01")


def test_cells_join_lists_write_objects_as_json_and_type_xlsx_values():
    date_field, = outputs.parse_fields([{"name": "d", "type": "date"}])
    assert outputs.cell_text(["a", "b"]) == "a; b"
    assert json.loads(outputs.cell_text({"x": 1})) == {"x": 1}
    assert outputs.cell_text(True) == "true" and outputs.cell_text(None) == ""
    assert outputs.xlsx_cell("2024-02-29", date_field) == datetime.date(2024, 2, 29)
    assert outputs.xlsx_cell(3, date_field) == 3
    assert outputs.xlsx_cell("not a date", date_field) == "not a date"
