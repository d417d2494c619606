"""The OpenAI-compatible provider: the real `openai` SDK against the fake OpenAI server."""

from __future__ import annotations

import asyncio

import pytest

from batches.fake_gemini.structured import structured_answer
from batches.fake_openai import FakeOpenAI
from batches.providers import (
    Attachment,
    ConfigurationError,
    PermanentError,
    Request,
    RetryableError,
    catalog,
    openai_compat,
)
from batches.providers.openai_compat import OpenAICompatProvider, response_format

KEY = "sk-test-0123456789"
SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]},
                   "score": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["sentiment", "score"],
    "additionalProperties": False,
    "propertyOrdering": ["sentiment", "score"],
}


@pytest.fixture
def server():
    with FakeOpenAI(models=("gpt-test",), require_key=KEY) as fake:
        yield fake


@pytest.fixture
def provider(server):
    return OpenAICompatProvider(api_key=KEY, base_url=server.base_url, timeout_s=5)


def generate(provider, **request):
    return asyncio.run(provider.generate(Request(**{"model": "gpt-test", **request})))


def error_of(provider, **request) -> Exception:
    with pytest.raises(Exception) as info:
        generate(provider, **request)
    return info.value


def test_it_answers_with_text_tokens_and_the_model(provider, server):
    response = generate(provider, prompt="hello there world")
    assert response.text == "ECHO: hello there world"
    assert (response.prompt_tokens, response.output_tokens) == (3, 4)
    assert response.model_version == "gpt-test"
    assert response.finish_reason == "STOP"
    assert server.snapshot()["total_requests"] == 1


def test_system_instruction_and_history_become_chat_messages(provider, server):
    generate(provider, prompt="third", system_instruction="Be brief.",
             history=(("first", "one"), ("second", "two")), temperature=0.5,
             max_output_tokens=50)
    body = server.snapshot(log=True)["log"][-1]["body"]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": "third"},
    ]
    assert (body["temperature"], body["max_tokens"]) == (0.5, 50)
    assert "response_format" not in body


def test_a_schema_is_sent_as_a_strict_json_schema_and_answered_by_it(provider, server):
    response = generate(provider, prompt="a review", response_schema=SCHEMA)
    body = server.snapshot(log=True)["log"][-1]["body"]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert "propertyOrdering" not in fmt["json_schema"]["schema"]  # Gemini's keyword only
    assert fmt["json_schema"]["schema"]["properties"] == SCHEMA["properties"]
    import json
    assert json.loads(response.text) == structured_answer(SCHEMA, "a review")


def test_a_schema_with_optional_fields_or_extra_properties_is_sent_non_strict():
    loose = {**SCHEMA, "required": ["sentiment"]}
    assert response_format(loose)["json_schema"]["strict"] is False
    assert response_format({**SCHEMA, "additionalProperties": True})["json_schema"][
        "strict"] is False
    assert response_format(SCHEMA)["json_schema"]["strict"] is True
    # The field editor's schemas say nothing of extra properties: they are sent closed.
    open_ended = {k: v for k, v in SCHEMA.items() if k != "additionalProperties"}
    sent = response_format(open_ended)["json_schema"]
    assert sent["strict"] is True and sent["schema"]["additionalProperties"] is False
    assert response_format({**open_ended, "required": ["score"]})["json_schema"][
        "strict"] is False


def test_a_429_is_retryable_with_the_servers_retry_after_and_sent_once(provider, server):
    server.configure(rate_limit_times={"#busy": 1}, retry_after_s=7)
    error = error_of(provider, prompt="x #busy")
    assert isinstance(error, RetryableError)
    assert (error.status, error.retry_after) == (429, 7.0)
    # max_retries=0: the SDK did not retry on its own.
    assert server.snapshot()["total_requests"] == 1
    assert generate(provider, prompt="x #busy").text == "ECHO: x #busy"


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retryable(provider, server, status):
    server.configure(error_rate=1.0, error_mix={status: 1})
    error = error_of(provider, prompt="x")
    assert isinstance(error, RetryableError) and error.status == status
    assert server.snapshot()["total_requests"] == 1


def test_400_and_404_are_permanent(provider, server):
    server.configure(fail_permanently=["#bad"])
    error = error_of(provider, prompt="x #bad")
    assert isinstance(error, PermanentError) and error.status == 400
    error = error_of(provider, model="no-such-model", prompt="x")
    assert isinstance(error, PermanentError) and error.status == 404
    assert "no-such-model" in error.message


def test_a_refused_key_fails_the_batch_and_is_never_shown(server):
    wrong = "sk-wrong-key-987654321"
    error = error_of(OpenAICompatProvider(api_key=wrong, base_url=server.base_url),
                     prompt="x")
    assert isinstance(error, ConfigurationError)
    assert "401" in error.message and wrong not in error.message


def test_a_refusal_or_an_empty_answer_is_permanent(provider, server):
    server.configure(refuse=["#no"], empty_answer=["#empty"])
    assert "refused" in error_of(provider, prompt="#no", response_schema=SCHEMA).message
    assert "no text" in error_of(provider, prompt="#empty").message


def test_a_connection_failure_is_retryable(server):
    url = server.base_url
    server.stop()
    error = error_of(OpenAICompatProvider(api_key=KEY, base_url=url), prompt="x")
    assert isinstance(error, RetryableError)


def test_reasoning_tokens_are_reported_as_thinking_not_answer(provider, server):
    server.configure(reasoning_tokens=10)
    response = generate(provider, prompt="a b")
    assert (response.output_tokens, response.thoughts_tokens) == (3, 10)  # "ECHO: a b"


def test_thinking_and_documents_are_refused_before_any_request(provider, server):
    assert isinstance(error_of(provider, prompt="x", thinking="low"), PermanentError)
    assert isinstance(error_of(provider, prompt="x", documents=(
        Attachment(mime_type="image/png", data=b"png"),)), PermanentError)
    assert server.snapshot()["total_requests"] == 0


def test_one_provider_serves_several_event_loops(provider):
    for _ in range(3):
        assert generate(provider, prompt="again").text == "ECHO: again"


def test_get_provider_reads_the_settings_and_needs_a_key(settings, server):
    openai_compat.reset_provider()
    settings.OPENAI_API_KEY = ""
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        openai_compat.get_provider()
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = KEY, server.base_url
    assert openai_compat.get_provider().base_url == server.base_url
    openai_compat.reset_provider()


def test_the_catalog_routes_by_model_and_groups_the_models(settings):
    settings.GEMINI_MODELS = ["gemini-2.5-flash", "gemini-2.5-pro"]
    settings.GEMINI_DEFAULT_MODEL = "gemini-2.5-flash"
    settings.OPENAI_MODELS = ["gpt-4o-mini", "llama3.1"]
    assert catalog.provider_name("gpt-4o-mini") == catalog.OPENAI
    assert catalog.provider_name("gemini-2.5-pro") == catalog.GEMINI
    assert catalog.model_groups() == [("Gemini", ["gemini-2.5-flash", "gemini-2.5-pro"]),
                                      ("OpenAI-compatible", ["gpt-4o-mini", "llama3.1"])]
    with pytest.raises(catalog.OptionError) as info:
        catalog.check_model("gpt-5")
    assert info.value.field == "model" and "gpt-4o-mini" in info.value.message
    with pytest.raises(catalog.OptionError) as info:
        catalog.check_options("llama3.1", thinking="low")
    assert info.value.field == "thinking"
    with pytest.raises(catalog.OptionError) as info:
        catalog.check_options("llama3.1", documents=True)
    assert info.value.field == "documents"
    catalog.check_options("gemini-2.5-pro", thinking="low", documents=True)
    settings.OPENAI_MODELS = []
    assert catalog.model_groups() == [("Gemini", ["gemini-2.5-flash", "gemini-2.5-pro"])]


def test_retry_after_ms_is_preferred_and_retry_after_read_in_seconds_or_as_a_date():
    import httpx2

    from batches.providers.openai_compat import _retry_after

    assert _retry_after(httpx2.Response(429, headers={"retry-after-ms": "1500",
                                                      "retry-after": "9"})) == 1.5
    assert _retry_after(httpx2.Response(429, headers={"retry-after": "9"})) == 9.0
    dated = _retry_after(httpx2.Response(429, headers={
        "retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"}))
    assert dated is not None and dated > 1e8
    assert _retry_after(httpx2.Response(429)) is None
