"""A model's answer against the batch's schema: parse, validate, and word the repair note."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

MISMATCH_PREFIX = "output did not match the schema"
REASON_CHARS = 300
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


class AnswerMismatch(ValueError):
    """The answer is not JSON, or not JSON that matches the schema."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason[:REASON_CHARS]
        self.message = f"{MISMATCH_PREFIX}: {self.path}: {self.reason}"
        super().__init__(self.message)


def check_answer(text: str, schema: dict) -> Any:
    """The answer's data if it matches `schema`; AnswerMismatch naming the first problem."""
    match = _FENCE.match(text)  # a model outside JSON mode may wrap its answer in a fence
    if match:
        text = match.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnswerMismatch(
            "$", f"the answer is not valid JSON ({err.msg} at line {err.lineno} column "
                 f"{err.colno})") from None
    error = best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(data))
    if error is not None:
        raise AnswerMismatch(error.json_path, error.message)
    return data


def repair_note(mismatch: AnswerMismatch) -> str:
    """What the model is told when its answer is sent back once for repair."""
    return (
        "Your previous answer did not match the required JSON schema "
        f"({mismatch.path}: {mismatch.reason}). Answer again with only the corrected JSON "
        "object, following the schema exactly."
    )


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Draft202012Validator:
    # One compiled validator per distinct schema: a slice checks thousands of rows against it.
    return Draft202012Validator(json.loads(schema_json), format_checker=FormatChecker())
