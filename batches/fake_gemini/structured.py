"""The fake's structured output: JSON that follows the request's schema, derived from the prompt.

`structured_answer(schema, prompt)` is deterministic (a hash of the prompt and the value's
path), so a test can predict each row's data by calling it. Gemini sends the schema as
`responseJsonSchema` (JSON Schema) or `responseSchema` (its OpenAPI subset, upper-case types);
both are read. Knob markers in the prompt make the answer bad on purpose:

- `json_invalid_once`: the first answer is cut-off JSON; the answer to a repair turn is valid;
- `json_invalid_always`: every answer, repairs included, is cut-off JSON;
- `json_mismatch`: every answer is JSON whose first property has the wrong type.

A request is a *repair* when its last turns are (user prompt, model answer, user note) and that
model answer is not what this fake answers the prompt validly: the note is then about that
prompt, which is what the answer is derived from. Plain Python; nothing of Django.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

_EPOCH = datetime.date(2020, 1, 1)


def schema_of(config: dict) -> dict | None:
    schema = config.get("responseJsonSchema")
    if schema is None:
        schema = config.get("responseSchema")
    return schema if isinstance(schema, dict) else None


def structured_answer(schema: dict, prompt: str) -> Any:
    """The valid answer to `prompt` under `schema`: the same every time."""
    return _value(schema, prompt, "$", depth=0)


def valid_text(schema: dict, prompt: str) -> str:
    return json.dumps(structured_answer(schema, prompt), ensure_ascii=False)


def subject_of(schema: dict, texts: list[tuple[str, str]]) -> tuple[str, bool]:
    """(the prompt the answer is about, whether this request is a repair) from (role, text)s."""
    if (len(texts) >= 3 and texts[-2][0] == "model" and texts[-3][0] == "user"
            and texts[-2][1] != valid_text(schema, texts[-3][1])):
        return texts[-3][1], True
    return (texts[-1][1] if texts else ""), False


def answer_text(schema: dict, texts: list[tuple[str, str]], *, invalid_once: tuple[str, ...],
                invalid_always: tuple[str, ...], mismatch: tuple[str, ...]) -> str:
    subject, repairing = subject_of(schema, texts)
    good = valid_text(schema, subject)
    if any(m in subject for m in invalid_always) or (
            not repairing and any(m in subject for m in invalid_once)):
        return good[: max(1, len(good) * 2 // 3)]  # cut off, as when a stream is truncated
    if any(m in subject for m in mismatch):
        return json.dumps(_mismatched(schema, structured_answer(schema, subject)))
    return good


def _mismatched(schema: dict, data: Any) -> Any:
    properties = _get(schema, "properties")
    if not isinstance(data, dict) or not isinstance(properties, dict) or not properties:
        return {"unexpected": True} if not isinstance(data, dict) else 12345
    name = _ordered(schema)[0]
    wrong = 12345 if _type(properties[name]) == "string" else "not a valid value"
    return {**data, name: wrong}


def _get(node: dict, key: str) -> Any:
    # google-genai turns a response_schema's snake_case keys into camelCase; accept both.
    snake = "".join("_" + c.lower() if c.isupper() else c for c in key)
    return node.get(key, node.get(snake))


def _ordered(node: dict) -> list[str]:
    """Property names in `propertyOrdering` order when it lists them all, else as given."""
    names = list(node.get("properties") or {})
    ordering = _get(node, "propertyOrdering")
    if isinstance(ordering, list) and sorted(map(str, ordering)) == sorted(names):
        return [str(name) for name in ordering]
    return names


def _type(node: dict) -> str | None:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), None)
    if kind is None:
        if "properties" in node:
            return "object"
        if "items" in node:
            return "array"
        return None
    return str(kind).lower()


def _number(prompt: str, path: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{path}\x00{prompt}".encode()).digest()[:8], "big")


def _value(node: Any, prompt: str, path: str, depth: int) -> Any:
    if not isinstance(node, dict) or depth > 8:
        return None
    for key in ("anyOf", "oneOf"):
        branches = _get(node, key)
        if isinstance(branches, list) and branches:
            return _value(branches[0], prompt, path, depth + 1)
    h = _number(prompt, path)
    enum = node.get("enum")
    if isinstance(enum, list) and enum:
        return enum[h % len(enum)]
    kind = _type(node)
    if kind == "object":
        properties = node.get("properties") or {}
        return {name: _value(properties[name], prompt, f"{path}.{name}", depth + 1)
                for name in _ordered(node)}
    if kind == "array":
        low = int(_get(node, "minItems") or 1)
        high = max(low, int(_get(node, "maxItems") or 3))
        items = node.get("items") if isinstance(node.get("items"), dict) else {"type": "string"}
        return [_value(items, prompt, f"{path}[{i}]", depth + 1)
                for i in range(low + h % (high - low + 1))]
    if kind == "integer":
        low, high = _bounds(node, 0, 100)
        return int(low + h % (int(high) - int(low) + 1))
    if kind == "number":
        low, high = _bounds(node, 0, 100)
        return round(low + (h % 10_001) / 10_000 * (high - low), 2)
    if kind == "boolean":
        return h % 2 == 0
    if kind == "null":
        return None
    if node.get("format") == "date":
        return (_EPOCH + datetime.timedelta(days=h % 2000)).isoformat()
    if node.get("format") == "date-time":
        return f"{(_EPOCH + datetime.timedelta(days=h % 2000)).isoformat()}T12:00:00Z"
    return _phrase(prompt, h)


def _bounds(node: dict, low: float, high: float) -> tuple[float, float]:
    minimum, maximum = node.get("minimum"), node.get("maximum")
    if minimum is not None and maximum is None:
        return float(minimum), float(minimum) + (high - low)
    if maximum is not None and minimum is None:
        return float(maximum) - (high - low), float(maximum)
    if minimum is not None and maximum is not None:
        return float(minimum), float(maximum)
    return low, high


def _phrase(prompt: str, h: int) -> str:
    """A few consecutive words of the prompt: text that is about the row, like an answer."""
    words = prompt.strip().rsplit("\n", 1)[-1].split()  # the last line holds the row, often
    if not words:
        return "nothing to say"
    start = h % max(1, len(words) - 5)
    return " ".join(words[start:start + 6])
