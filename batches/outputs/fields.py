"""Output fields (what the field editor, the API's `output_fields` and the CLI's `--field` say)
and the JSON Schema they stand for, both ways.

The schema is what a batch stores (`Batch.response_schema`); the fields shown as columns are
read back from it, so a schema written by hand (Advanced: JSON Schema) has columns too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from batches.outputs.schema import MAX_FIELDS, NAME_RE, NAME_RULE, OutputSchemaError, check_schema

# The editor's types, with their labels.
FIELD_TYPES = {
    "text": "text",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "enum": "one of",
    "list": "list of text",
    "date": "date",
}
# What people type for them (CLI, API); the keys of FIELD_TYPES stand for themselves.
TYPE_ALIASES = {
    "string": "text", "str": "text", "int": "integer", "float": "number", "bool": "boolean",
    "one-of": "enum", "oneof": "enum", "one of": "enum", "choice": "enum",
    "list of text": "list", "list-of-text": "list", "list(text)": "list", "array": "list",
}
MAX_DESCRIPTION_CHARS = 500
NUMERIC = ("integer", "number")
_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:to|-|\.\.|–)\s*(-?\d+(?:\.\d+)?)\s*$")
_SPEC_TYPE = re.compile(r"^\s*([A-Za-z][A-Za-z -]*?)\s*(?:\((.*)\))?\s*$", re.DOTALL)


@dataclass(frozen=True)
class OutputField:
    """One output column. `kind` is a FIELD_TYPES key, or "object"/"json" for shapes only a
    hand-written schema makes (shown as JSON text)."""

    name: str
    kind: str = "text"
    description: str = ""
    required: bool = True
    values: tuple[str, ...] = ()
    minimum: float | None = None  # integer and number fields
    maximum: float | None = None

    @property
    def label(self) -> str:
        label = FIELD_TYPES.get(self.kind, self.kind)
        if self.kind == "enum":
            label += f" ({', '.join(self.values)})"
        elif self.minimum is not None or self.maximum is not None:
            label += f" ({_range_text(self.minimum, self.maximum)})"
        return label

    @property
    def numeric(self) -> bool:
        return self.kind in ("integer", "number")

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.kind,
                                "description": self.description, "required": self.required}
        if self.kind == "enum":
            data["values"] = list(self.values)
        if self.minimum is not None:
            data["minimum"] = self.minimum
        if self.maximum is not None:
            data["maximum"] = self.maximum
        return data


def parse_fields(raw: Any, path: str = "output_fields") -> list[OutputField]:
    """Read a list of field dicts ({name, type, values, description, required})."""
    if not isinstance(raw, list):
        raise OutputSchemaError("must be a list of fields", path)
    if not raw:
        raise OutputSchemaError("define at least one field", path)
    if len(raw) > MAX_FIELDS:
        raise OutputSchemaError(f"{len(raw)} fields; the limit is {MAX_FIELDS}", path)
    fields: list[OutputField] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        field = _parse_field(item, where)
        if field.name in first_seen:
            raise OutputSchemaError(
                f"duplicate name {field.name!r} (also {path}[{first_seen[field.name]}])",
                f"{where}.name")
        first_seen[field.name] = i
        fields.append(field)
    return fields


def _parse_field(item: Any, where: str) -> OutputField:
    if not isinstance(item, dict):
        raise OutputSchemaError("must be an object with name and type", where)
    unknown = sorted(set(item) - {"name", "type", "values", "description", "required",
                                  "minimum", "maximum"})
    if unknown:
        raise OutputSchemaError(f"unknown key {unknown[0]!r}", f"{where}.{unknown[0]}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise OutputSchemaError("a name is required", f"{where}.name")
    name = name.strip()
    if not NAME_RE.match(name):
        raise OutputSchemaError(f"{name!r} is not a usable name; use {NAME_RULE}", f"{where}.name")
    kind = normalise_type(item.get("type", "text"), f"{where}.type")
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise OutputSchemaError("must be text", f"{where}.description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise OutputSchemaError(f"longer than {MAX_DESCRIPTION_CHARS} characters",
                                f"{where}.description")
    required = item.get("required", True)
    if not isinstance(required, bool):
        raise OutputSchemaError("must be true or false", f"{where}.required")
    values: tuple[str, ...] = ()
    raw_values = item.get("values")
    if kind == "enum":
        if isinstance(raw_values, str):
            raw_values = raw_values.split(",")
        if not isinstance(raw_values, list) or not all(isinstance(v, str) for v in raw_values):
            raise OutputSchemaError("list the values of a one-of field as text",
                                    f"{where}.values")
        values = tuple(dict.fromkeys(v.strip() for v in raw_values if v.strip()))
        if not values:
            raise OutputSchemaError("a one-of field needs at least one value", f"{where}.values")
    elif raw_values not in (None, "", []) and not (kind in NUMERIC and isinstance(raw_values,
                                                                               str)):
        raise OutputSchemaError("only a one-of field has values", f"{where}.values")
    minimum, maximum = _bounds(item, kind, raw_values, where)
    return OutputField(name, kind, description.strip(), required, values, minimum, maximum)


def _bounds(item: dict, kind: str, raw_values: Any, where: str
            ) -> tuple[float | None, float | None]:
    """A number field's range: `minimum`/`maximum`, or the editor's values cell ("1 to 5")."""
    minimum, maximum = item.get("minimum"), item.get("maximum")
    if kind not in NUMERIC:
        if minimum is not None or maximum is not None:
            key = "minimum" if minimum is not None else "maximum"
            raise OutputSchemaError("only an integer or number field has a range",
                                    f"{where}.{key}")
        return None, None
    if isinstance(raw_values, str) and raw_values.strip():
        found = parse_range(raw_values)
        if found is None:
            raise OutputSchemaError(f"{raw_values!r} is not a range; write it like 1 to 5",
                                    f"{where}.values")
        minimum, maximum = found
    for key, value in (("minimum", minimum), ("maximum", maximum)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise OutputSchemaError("must be a number", f"{where}.{key}")
    if kind == "integer":
        for key, value in (("minimum", minimum), ("maximum", maximum)):
            if isinstance(value, float) and not value.is_integer():
                raise OutputSchemaError("must be a whole number", f"{where}.{key}")
        minimum = int(minimum) if minimum is not None else None
        maximum = int(maximum) if maximum is not None else None
    if minimum is not None and maximum is not None and minimum > maximum:
        raise OutputSchemaError(f"the range {minimum} to {maximum} is empty", f"{where}.maximum")
    return minimum, maximum


def parse_range(text: str) -> tuple[float, float] | None:
    """"1 to 5", "1-5", "1..5", "0.5 to 1" -> (low, high); None when it is not a range."""
    match = _RANGE.match(text)
    if match is None:
        return None
    low, high = (float(g) for g in match.groups())
    return (int(low) if low.is_integer() else low), (int(high) if high.is_integer() else high)


def _range_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{minimum:g} to {maximum:g}"
    return f"at least {minimum:g}" if minimum is not None else f"at most {maximum:g}"


def normalise_type(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise OutputSchemaError("must be text", where)
    key = value.strip().lower()
    kind = key if key in FIELD_TYPES else TYPE_ALIASES.get(key)
    if kind is None:
        raise OutputSchemaError(
            f"unknown type {value!r}; use one of {', '.join(FIELD_TYPES)}", where)
    return kind


def parse_field_spec(spec: str, path: str = "--field") -> dict[str, Any]:
    """`name[?]:type[:description]` as the CLI takes it, e.g. `sentiment:enum(a,b,c)` or
    `score:integer:1 to 5`; a `?` after the name makes the field optional."""
    name, _, rest = spec.partition(":")
    type_spec, _, description = rest.partition(":")
    if not name.strip() or not type_spec.strip():
        raise OutputSchemaError(f"{spec!r}: write name:type[:description], "
                                "e.g. sentiment:enum(positive,negative)", path)
    name = name.strip()
    required = not name.endswith("?")
    match = _SPEC_TYPE.match(type_spec)
    if match is None:
        raise OutputSchemaError(f"{spec!r}: cannot read the type {type_spec!r}", path)
    kind, values = match.group(1), match.group(2)
    field: dict[str, Any] = {"name": name.rstrip("?"), "type": kind,
                             "description": description.strip(), "required": required}
    if values is not None:
        if kind.strip().lower() in ("list", "array"):
            field["type"] = "list"
        elif kind.strip().lower() in NUMERIC:
            field["values"] = values  # integer(1 to 5)
        else:
            field["values"] = values.split(",")
    elif kind.strip().lower() in NUMERIC and parse_range(description):
        field["values"] = description  # score:integer:1 to 5 -- a range, and said to the model
    return field


def fields_to_schema(fields: list[OutputField]) -> dict[str, Any]:
    """The JSON Schema the model is asked to follow: one property per field, in order."""
    properties: dict[str, Any] = {}
    for field in fields:
        prop: dict[str, Any]
        if field.kind == "text":
            prop = {"type": "string"}
        elif field.kind == "enum":
            prop = {"type": "string", "enum": list(field.values)}
        elif field.kind == "list":
            prop = {"type": "array", "items": {"type": "string"}}
        elif field.kind == "date":
            prop = {"type": "string", "format": "date"}
        else:
            prop = {"type": field.kind}
            if field.minimum is not None:
                prop["minimum"] = field.minimum
            if field.maximum is not None:
                prop["maximum"] = field.maximum
        if field.description:
            prop["description"] = field.description
        properties[field.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [f.name for f in fields if f.required]
    if required:
        schema["required"] = required
    return check_schema(schema)


def fields_from_schema(schema: Any) -> list[OutputField]:
    """The columns a stored schema makes: one per top-level property (none for a text batch)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return []
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    properties = schema["properties"]
    names = list(properties)
    ordering = schema.get("propertyOrdering")
    if isinstance(ordering, list) and sorted(map(str, ordering)) == sorted(names):
        names = ordering  # the stored order (see schema.with_property_ordering)
    return [
        _field_of(name, properties[name] if isinstance(properties[name], dict) else {},
                  name in required)
        for name in names
    ]


def _field_of(name: str, prop: dict, required: bool) -> OutputField:
    kind, values = _kind_of(prop)
    description = prop.get("description") if isinstance(prop.get("description"), str) else ""
    bounds = [prop.get(k) if kind in NUMERIC and isinstance(prop.get(k), (int, float))
              and not isinstance(prop.get(k), bool) else None for k in ("minimum", "maximum")]
    return OutputField(name, kind, description, required, values, *bounds)


def _kind_of(prop: dict) -> tuple[str, tuple[str, ...]]:
    kind = prop.get("type")
    if isinstance(kind, list):  # ["integer", "null"]: the non-null type decides
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return "enum", tuple(enum)
    if kind == "string":
        return ("date" if prop.get("format") == "date" else "text"), ()
    if kind in ("integer", "number", "boolean"):
        return kind, ()
    if kind == "array":
        return "list", ()
    if kind == "object":
        return "object", ()
    return "json", ()
