"""The cache key: a sha256 over the owner and the named inputs of a provider Request.

Every field of `providers.Request` must appear in KEY_INPUTS (it reaches the model or shapes its
answer), in KEYED_AS_EXTRA (it does, and enters the key as a named extra, e.g. documents by
digest) or in NOT_IN_KEY (it cannot change the answer); tests/resultcache checks that, so a new
request field (thinking budget, ...) is one more named input here, never forgotten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

from batches.providers import Request

# Bumped when the way inputs are written into the key changes, so old entries stop matching.
KEY_VERSION = 1

# What the model sees and what shapes its answer; the docs (docs/iterating.md) list the same.
KEY_INPUTS: tuple[str, ...] = (
    "model",
    "prompt",  # the rendered prompt, not the template
    "history",  # earlier (prompt, answer) turns of the row's conversation
    "system_instruction",
    "temperature",
    "max_output_tokens",
    "response_schema",
    "thinking",  # the thinking option changes the answer and what it costs
    "tools",  # grounding: search results and read URLs change the answer (and its sources)
)
NOT_IN_KEY: tuple[str, ...] = ()
# Request fields that change the answer but enter the key as a named extra of the same name:
# attached documents go in as their content digests and MIME types (batches.engine.reuse), not
# as bytes (not read at claim time) nor Files API URIs (new with every upload).
KEYED_AS_EXTRA: tuple[str, ...] = ("documents",)


def _as_float(value: Any) -> Any:
    return None if value is None else float(value)


def _tool_set(value: Any) -> list[str]:
    return sorted(set(value or ()))


# 1 and 1.0 are the same temperature; the order tools are offered in does not matter.
_NORMALISE: dict[str, Callable[[Any], Any]] = {"temperature": _as_float, "tools": _tool_set}


def key_inputs(request: Request) -> dict[str, Any]:
    """The named inputs of a request that go into its key. A request without tools keys as it
    did before tools existed, so earlier cached answers still match."""
    inputs = {name: _NORMALISE.get(name, _same)(getattr(request, name)) for name in KEY_INPUTS}
    if not inputs["tools"]:
        del inputs["tools"]
    return inputs


def cache_key(owner_id: int, request: Request, **extra: Any) -> str:
    """sha256 hex of the owner and the request's inputs; `extra` adds named inputs that are not
    fields of the Request (e.g. a document's digest)."""
    inputs = key_inputs(request)
    unkeyed = [n for n in KEYED_AS_EXTRA if getattr(request, n) and n not in extra]
    if unkeyed:
        raise ValueError(f"request inputs {unkeyed} must be passed as named extras")
    overlap = set(inputs) & set(extra)
    if overlap:
        raise ValueError(f"cache inputs named twice: {sorted(overlap)}")
    payload = {"v": KEY_VERSION, "owner": owner_id, **inputs, **extra}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_encode)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _same(value: Any) -> Any:
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"sha256": hashlib.sha256(bytes(value)).hexdigest()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"cannot put {type(value).__name__} into a cache key")
