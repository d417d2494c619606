"""Checks on a JSON Schema someone gives for a batch's output, before anything is created.

The limits keep a schema within what Gemini accepts and what a results table can show: a
top-level object whose properties are the columns, known types only, no empty enum, at most
MAX_FIELDS properties in all, at most MAX_DEPTH levels of nesting, at most MAX_SCHEMA_BYTES.
Every error names where it is, as a path such as `response_schema.properties.score.type`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_FIELDS = 100
MAX_DEPTH = 5
MAX_SCHEMA_BYTES = 50 * 1024
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
NAME_RULE = ("a letter or _ followed by letters, digits or _ (at most 64), "
             "such as sentiment or main_reason")


class OutputSchemaError(ValueError):
    """The output definition is wrong; `path` says where (`output_fields[2].type`)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


def loads_schema(text: str, path: str = "response_schema") -> dict:
    """Parse a schema written as JSON text, refusing duplicate keys that json.loads would drop."""
    if len(text.encode("utf-8")) > MAX_SCHEMA_BYTES:
        raise OutputSchemaError(f"the schema is larger than {MAX_SCHEMA_BYTES // 1024} KB", path)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise OutputSchemaError(f"the name {key!r} appears twice", path)
            seen[key] = value
        return seen

    try:
        schema = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as err:
        raise OutputSchemaError(
            f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})", path) from None
    return check_schema(schema, path)


def check_schema(schema: Any, path: str = "response_schema") -> dict:
    """Return the schema if it is usable for columns; raise OutputSchemaError naming the problem."""
    if not isinstance(schema, dict):
        raise OutputSchemaError("must be a JSON object (a JSON Schema)", path)
    size = len(json.dumps(schema, ensure_ascii=False).encode("utf-8"))
    if size > MAX_SCHEMA_BYTES:
        raise OutputSchemaError(
            f"the schema is {size / 1024:.0f} KB; the limit is {MAX_SCHEMA_BYTES // 1024} KB", path)
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise OutputSchemaError(
            'the top level must be {"type": "object", "properties": {...}}: each property '
            "becomes a column", path)
    if not schema["properties"]:
        raise OutputSchemaError("define at least one property", f"{path}.properties")
    for name in schema["properties"]:
        if not NAME_RE.match(name):
            raise OutputSchemaError(f"{name!r} is not a usable column name; use {NAME_RULE}",
                                    f"{path}.properties")
    count = _walk(schema, path, depth=0)
    if count > MAX_FIELDS:
        raise OutputSchemaError(f"{count} fields; the limit is {MAX_FIELDS}", path)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        where = ".".join([path, *(str(p) for p in err.absolute_path)])
        raise OutputSchemaError(f"not a valid JSON Schema: {err.message}", where) from None
    return with_property_ordering(schema, path)


def with_property_ordering(node: Any, path: str = "response_schema") -> Any:
    """A copy of the schema where every object lists its properties in `propertyOrdering`.

    PostgreSQL's jsonb does not keep the order of an object's keys, and the order of the
    properties is the order of the columns (and of the model's answer): a list keeps it.
    `propertyOrdering` is Gemini's own keyword for it; jsonschema ignores it."""
    if isinstance(node, list):
        return [with_property_ordering(item, f"{path}[{i}]") for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    copy = {key: with_property_ordering(value, f"{path}.{key}") for key, value in node.items()}
    properties = node.get("properties")
    if isinstance(properties, dict) and properties:
        ordering = node.get("propertyOrdering")
        if ordering is None:
            copy["propertyOrdering"] = list(properties)
        elif not isinstance(ordering, list) or sorted(map(str, ordering)) != sorted(properties):
            raise OutputSchemaError("must list every property exactly once",
                                    f"{path}.propertyOrdering")
    return copy


def check_names(names: Iterable[str], input_columns: Iterable[str],
                path: str = "output_fields") -> None:
    """Output columns sit beside the input columns in exports: the names must differ."""
    taken = set(input_columns)
    for i, name in enumerate(names):
        if name in taken:
            where = f"{path}.{name}" if path.endswith("properties") else f"{path}[{i}].name"
            raise OutputSchemaError(
                f"the output field {name!r} has the name of an input column of the file; "
                f"rename it (for example {name + '_label'!r})", where)


def _walk(node: Any, path: str, depth: int) -> int:
    """Check types and enums below `node`; return how many properties it defines.

    `depth` counts the objects and arrays around `node`; the top-level object is level 1."""
    if not isinstance(node, dict):
        return 0
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in JSON_TYPES:
            raise OutputSchemaError(
                f"unknown type {k!r}; use one of {', '.join(JSON_TYPES)}", f"{path}.type")
    if {"object", "array"} & set(kinds) or "properties" in node or "items" in node:
        depth += 1
        if depth > MAX_DEPTH:
            raise OutputSchemaError(f"nested more than {MAX_DEPTH} levels deep", path)
    if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
        raise OutputSchemaError("an enum needs at least one value", f"{path}.enum")
    required = node.get("required")
    if isinstance(required, list):
        dupes = sorted({r for r in required if isinstance(r, str) and required.count(r) > 1})
        if dupes:
            raise OutputSchemaError(f"{dupes[0]!r} is listed twice", f"{path}.required")
    count = 0
    properties = node.get("properties")
    if isinstance(properties, dict):
        count += len(properties)
        for name, sub in properties.items():
            count += _walk(sub, f"{path}.properties.{name}", depth)
    items = node.get("items")
    if isinstance(items, dict):
        count += _walk(items, f"{path}.items", depth)
    for key in ("anyOf", "oneOf", "prefixItems"):
        subs = node.get(key)
        for i, sub in enumerate(subs if isinstance(subs, list) else []):
            count += _walk(sub, f"{path}.{key}[{i}]", depth)
    for key in ("$defs", "definitions"):
        defs = node.get(key)
        if isinstance(defs, dict):
            for name, sub in defs.items():
                count += _walk(sub, f"{path}.{key}.{name}", depth)
    return count
