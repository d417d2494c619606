"""Structured output: a batch's answers as typed columns.

A batch's output is either free text or *columns*: a list of output fields (name, type,
description, required) that becomes a JSON Schema the model is asked to follow. This package
turns fields into a schema and back (fields), checks a schema someone wrote by hand against the
limits (schema), parses and validates an answer and words the repair note (answers), summarises
the answers per field (summary) and shapes them into export cells (columns).

It is plain Python on jsonschema, beside prompts in the lowest layer: it must never import
models, engine, services, web, api or any other batches module.
"""

from batches.outputs.answers import AnswerMismatch, check_answer, repair_note
from batches.outputs.columns import cell_text, xlsx_cell
from batches.outputs.fields import (
    FIELD_TYPES,
    OutputField,
    fields_from_schema,
    fields_to_schema,
    parse_field_spec,
    parse_fields,
)
from batches.outputs.schema import (
    MAX_DEPTH,
    MAX_FIELDS,
    MAX_SCHEMA_BYTES,
    OutputSchemaError,
    check_names,
    check_schema,
    loads_schema,
)
from batches.outputs.summary import FieldSummary, summarise

__all__ = [
    "FIELD_TYPES", "MAX_DEPTH", "MAX_FIELDS", "MAX_SCHEMA_BYTES", "AnswerMismatch",
    "FieldSummary", "OutputField", "OutputSchemaError", "cell_text", "check_answer",
    "check_names", "check_schema", "fields_from_schema", "fields_to_schema",
    "loads_schema", "parse_field_spec", "parse_fields", "repair_note", "summarise", "xlsx_cell",
]
