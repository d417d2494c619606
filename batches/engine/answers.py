"""A row's answer under the batch's output schema: validated, repaired once, or failed.

A text batch's answer is stored as it comes. A columns batch's answer must be JSON matching the
schema (batches.outputs); one that is not is sent back once with a note naming what was wrong,
as a further turn of the same conversation. That repair is an attempt of its own (the row's
`attempts` shows it) and needs one left in the row's retry budget; if the repaired answer
still does not match, the row fails with "output did not match the schema: <path>: <reason>".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from batches import outputs
from batches.engine.db import ClaimedRow, Kind, Outcome
from batches.providers import Response

Send = Callable[[ClaimedRow], Awaitable[Response]]


async def answer_row(send: Send, row: ClaimedRow) -> Outcome:
    response = await send(row)
    schema = row.batch.response_schema
    if schema is None:
        return Outcome(row, Kind.SUCCEEDED, response=response)
    try:
        data = outputs.check_answer(response.text, schema)
    except outputs.AnswerMismatch as mismatch:
        if row.attempts + 1 > row.batch.max_retries:
            return Outcome(row, Kind.FAILED, error=mismatch.message, response=response)
        note = outputs.repair_note(mismatch)
    else:
        return Outcome(row, Kind.SUCCEEDED, response=response, data=data)
    repair = dataclasses.replace(row, prompt=note,
                                 history=row.history + ((row.prompt, response.text),))
    repaired = await send(repair)
    both = _added(response, repaired)
    try:
        data = outputs.check_answer(repaired.text, schema)
    except outputs.AnswerMismatch as mismatch:
        return Outcome(row, Kind.FAILED, error=mismatch.message, response=both,
                       extra_attempts=1)
    return Outcome(row, Kind.SUCCEEDED, response=both, data=data, extra_attempts=1)


def from_cache(row: ClaimedRow) -> Outcome | None:
    """The row's answer from the result cache, validated like a model's answer; None when the
    cached text does not match the schema (the model is asked instead, and its answer replaces
    the entry). The key includes the schema, so this only happens when validation changed."""
    assert row.cached is not None
    schema = row.batch.response_schema
    data = None
    if schema is not None:
        try:
            data = outputs.check_answer(row.cached.text, schema)
        except outputs.AnswerMismatch:
            return None
    return Outcome(row, Kind.SUCCEEDED, response=row.cached, latency_ms=0, data=data,
                   cached=True)


def _added(first: Response, second: Response) -> Response:
    """The repaired answer, with the tokens of both calls (both are billed)."""
    def total(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return dataclasses.replace(second, prompt_tokens=total(first.prompt_tokens,
                                                           second.prompt_tokens),
                               output_tokens=total(first.output_tokens, second.output_tokens))
