"""Grounding metadata for answers to requests that offer the google_search or url_context tool,
shaped like the REST API's (candidate.groundingMetadata, candidate.urlContextMetadata).

Deterministic like the rest of the fake: the search query is the prompt's first words, the
sources are pages under the reserved example.com / example.org domains named after it (or the
`grounding_sources` knob's), and url_context "reads" every http(s) URL in the prompt.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

QUERY_WORDS = 8
_URL = re.compile(r"https?://[^\s<>\"')\]]+")


def requested_tools(body: dict) -> set[str]:
    """The tools a generateContent body offers, by their snake_case names. Google's JSON parser
    takes lowerCamelCase and snake_case alike, so both are read."""
    names = set()
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if "googleSearch" in tool or "google_search" in tool:
            names.add("google_search")
        if "urlContext" in tool or "url_context" in tool:
            names.add("url_context")
    return names


def metadata(tools: set[str], prompt: str, answer: str,
             fixed_sources: tuple[dict, ...] = ()) -> dict[str, Any]:
    """The candidate fields grounding adds: groundingMetadata and/or urlContextMetadata."""
    extra: dict[str, Any] = {}
    chunks: list[dict] = []
    queries: list[str] = []
    if "url_context" in tools:
        urls = list(dict.fromkeys(u.rstrip(".,;:") for u in _URL.findall(prompt)))
        if urls:
            extra["urlContextMetadata"] = {"urlMetadata": [
                {"retrievedUrl": u, "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS"}
                for u in urls]}
            chunks += [{"web": {"uri": u, "title": urlsplit(u).hostname or u}} for u in urls]
    if "google_search" in tools:
        query = " ".join(prompt.split()[:QUERY_WORDS])
        queries.append(query)
        if fixed_sources:
            chunks += [{"web": dict(s)} for s in fixed_sources]
        else:
            slug = quote("-".join(query.lower().split())[:80], safe="-")
            chunks += [
                {"web": {"uri": f"https://example.com/search/{slug}", "title": "example.com"}},
                {"web": {"uri": f"https://example.org/wiki/{slug}", "title": "example.org"}},
            ]
    if "google_search" in tools or chunks:
        grounding: dict[str, Any] = {"groundingChunks": chunks}
        if queries:
            grounding["webSearchQueries"] = queries
            grounding["searchEntryPoint"] = {
                "renderedContent": f"<div class=\"fake-search\">{len(queries)} search</div>"}
        if chunks and answer:
            grounding["groundingSupports"] = [{
                "segment": {"startIndex": 0, "endIndex": len(answer.encode("utf-8")),
                            "text": answer},
                "groundingChunkIndices": list(range(len(chunks))),
            }]
        extra["groundingMetadata"] = grounding
    return extra
