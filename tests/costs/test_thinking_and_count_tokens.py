"""The thinking option as google-genai sends it, and the fake's countTokens and thoughts, through
the real SDK."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from google.genai import types

from batches.fake_gemini import FakeGemini
from batches.providers import ConfigurationError, Request
from batches.providers.gemini import GeminiProvider, thinking_config


@pytest.mark.parametrize("model, option, expected", [
    ("gemini-2.5-flash", "off", {"thinking_budget": 0}),
    ("gemini-2.5-flash", "low", {"thinking_budget": 1024}),
    ("gemini-2.5-flash", "99999", {"thinking_budget": 24576}),
    ("gemini-2.5-flash-lite", "100", {"thinking_budget": 512}),
    ("gemini-2.5-flash-lite", "off", {"thinking_budget": 0}),
    ("gemini-2.5-pro", "off", {"thinking_budget": 128}),  # Pro cannot stop thinking
    ("gemini-3-pro-preview", "off", {"thinking_level": types.ThinkingLevel.LOW}),
    ("gemini-3-flash-preview", "off", {"thinking_level": types.ThinkingLevel.MINIMAL}),
    ("gemini-3-pro-preview", "low", {"thinking_level": types.ThinkingLevel.LOW}),
    ("gemini-3-pro-preview", "8192", {"thinking_level": types.ThinkingLevel.HIGH}),
])
def test_the_thinking_option_maps_to_what_the_model_takes(model, option, expected):
    config = thinking_config(model, option)
    assert config.model_dump(exclude_none=True) == expected


def test_default_and_models_without_thinking_send_no_thinking_config():
    assert thinking_config("gemini-2.5-flash", "default") is None
    assert thinking_config("gemini-2.0-flash", "off") is None


@pytest.fixture
def server():
    with FakeGemini(thinking_tokens=300) as fake:
        yield fake


def test_count_tokens_answers_like_the_rest_api(server):
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]})
    request = urllib.request.Request(
        f"{server.url}/v1beta/models/gemini-2.5-flash:countTokens", data=body.encode(),
        headers={"x-goog-api-key": "k", "Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(request).read())
    assert answer == {"totalTokens": 3,
                      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]}


def test_the_provider_counts_tokens_through_the_sdk_and_names_a_refused_key(server):
    assert GeminiProvider(api_key="k", base_url=server.url).count_tokens(
        "gemini-2.5-flash", "four words right here") == 4
    server.configure(require_key="right")
    with pytest.raises(ConfigurationError, match="API key not valid"):
        GeminiProvider(api_key="wrong", base_url=server.url).count_tokens("m", "x")


def test_thoughts_are_reported_and_capped_by_the_thinking_budget(server):
    provider = GeminiProvider(api_key="k", base_url=server.url)

    def thoughts(option: str) -> int | None:
        request = Request(model="gemini-2.5-flash", prompt="a b c", thinking=option)
        return asyncio.run(provider.generate(request)).thoughts_tokens

    assert thoughts("default") == 300
    assert thoughts("100") == 100
    assert thoughts("off") is None
    answer = asyncio.run(provider.generate(Request(model="gemini-2.5-flash", prompt="a b c",
                                                   thinking="default")))
    assert (answer.prompt_tokens, answer.output_tokens) == (3, 4)  # thoughts counted apart
