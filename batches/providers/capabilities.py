"""Which models take which tools: a small table kept beside the model list (GEMINI_MODELS).

The pages show a tool's switch only for models that take it, and services refuse a batch that
asks a model for a tool it lacks (a 400 naming the field). A model matches the first pattern
that its name starts with; unknown models take no tools.
"""

from __future__ import annotations

import re

# Tool name (the Request's and the Batch field's) -> what the pages call it.
TOOLS: dict[str, str] = {
    "google_search": "Ground answers with Google Search",
    "url_context": "Read URLs in the prompt",
}

# Gemini 2.0, 2.5 and later take both tools (Google's grounding and URL context docs); 1.x
# models had only the older google_search_retrieval, which is not offered here.
MODEL_TOOLS: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (re.compile(r"^(models/)?gemini-1\."), frozenset()),
    (re.compile(r"^(models/)?gemini-([2-9]|\d\d)"), frozenset(TOOLS)),
)


# Gemini 2.x answers a tool together with a response schema with 400 "controlled generation is
# not supported with google_search tool" (python-genai issue #665); Gemini 3 documents
# structured output with tools.
TOOLS_WITH_SCHEMA = re.compile(r"^(models/)?gemini-([3-9]|\d\d)")


def tools_with_schema(model: str) -> bool:
    """Whether `model` takes its tools together with a JSON response schema (columns output)."""
    return bool(TOOLS_WITH_SCHEMA.match(model or ""))


def model_tools(model: str) -> frozenset[str]:
    """The tools `model` takes (empty for a model the table does not know)."""
    for pattern, tools in MODEL_TOOLS:
        if pattern.match(model or ""):
            return tools
    return frozenset()


def supports(model: str, tool: str) -> bool:
    return tool in model_tools(model)
