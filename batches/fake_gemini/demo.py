"""Plausible, deterministic answers for `make demo` (the `demo_answers` knob): a sentiment word
and a one-line reason for a review, and values that fit a response schema. The same prompt
always gets the same answer. Tests and the benchmark never turn this on; they use the echo."""

from __future__ import annotations

import hashlib
import re
from typing import Any

POSITIVE = ("love", "great", "excellent", "comfortable", "light", "grippy", "perfect", "quiet",
            "consistent", "easy", "fast", "sturdy", "recommend", "best", "happy", "works well",
            "worth", "crisp", "bright", "reliable")
NEGATIVE = ("peel", "broke", "broken", "cracked", "returned", "return", "slow", "poor", "bad",
            "worst", "stopped", "leak", "noisy", "loud", "disappoint", "refund", "flimsy",
            "terrible", "awful", "useless", "small", "died", "faulty")
_STARS = re.compile(r"\(?(\d(?:\.\d)?)\s*stars?\)?", re.IGNORECASE)
_REVIEW = re.compile(r"review:\s*(.+)", re.IGNORECASE | re.DOTALL)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentiment(text: str) -> tuple[str, int]:
    """("positive" | "mixed" | "negative", star rating or 0) from keywords and stars."""
    lower = text.lower()
    score = sum(lower.count(w) for w in POSITIVE) - sum(lower.count(w) for w in NEGATIVE)
    stars_match = _STARS.search(text)
    stars = int(float(stars_match.group(1))) if stars_match else 0
    # "good, but ..." is the shape of a mixed review.
    score -= 2 * sum(lower.count(w) for w in (" but ", " though ", "however"))
    if stars:
        score += {1: -3, 2: -2, 3: 0, 4: 1, 5: 3}.get(stars, 0)
    if score >= 2:
        return "positive", stars
    if score <= -2:
        return "negative", stars
    return "mixed", stars


def _subject(prompt: str) -> str:
    match = _REVIEW.search(prompt)
    text = (match.group(1) if match else prompt).strip()
    first = _SENTENCE.split(text, 1)[0].strip().rstrip(".!?")
    return first[:140]


def reason(prompt: str, label: str) -> str:
    subject = _subject(prompt)
    lead = {"positive": "The reviewer is pleased", "negative": "The reviewer is unhappy",
            "mixed": "The reviewer is of two minds"}[label]
    return f"{lead}: {subject[0].lower() + subject[1:] if subject else 'no details given'}."


def text_answer(prompt: str) -> str:
    """"Positive — <reason>" for a review; otherwise a short deterministic reply."""
    label, _ = sentiment(prompt)
    return f"{label.capitalize()} — {reason(prompt, label)}"


def json_answer(prompt: str, schema: dict | None) -> Any:
    """A value that fits `schema` (Gemini's OpenAPI subset), built from the prompt."""
    label, stars = sentiment(prompt)
    return _fit(schema or {"type": "object", "properties": {"sentiment": {"type": "string"},
                                                             "reason": {"type": "string"}}},
                prompt, label, stars, name="")


def _fit(schema: dict, prompt: str, label: str, stars: int, name: str) -> Any:
    kind = str(schema.get("type", "string")).lower()
    if schema.get("enum"):
        options = [str(o) for o in schema["enum"]]
        matching = [o for o in options if o.lower() == label or label in o.lower()]
        return matching[0] if matching else options[_pick(prompt, len(options))]
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _fit(sub, prompt, label, stars, key) for key, sub in props.items()}
    if kind == "array":
        return [_fit(schema.get("items") or {"type": "string"}, prompt, label, stars, name)]
    if kind == "boolean":
        return label == "positive"
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", 1), schema.get("maximum", 5)
        value = stars or {"positive": 5, "mixed": 3, "negative": 1}[label]
        value = min(max(value, low), high)
        return int(value) if kind == "integer" else float(value)
    if "sentiment" in name or "label" in name or "class" in name:
        return label
    return reason(prompt, label)


def _pick(prompt: str, n: int) -> int:
    return int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % n
