import asyncio
import email.utils
import json
import threading
import time
from types import SimpleNamespace

import pytest

from batches.fake_gemini import DAY_QUOTA_ID, MINUTE_QUOTA_ID
from batches.fake_gemini.structured import structured_answer
from batches.providers.base import (
    ConfigurationError,
    PermanentError,
    ProviderError,
    Request,
    RetryableError,
)
from batches.providers.gemini import (
    GeminiProvider,
    _retry_after_header,
    _retry_delay,
    get_provider,
    reset_provider,
)

API_KEY = "sk-test-secret-0123456789"
MODEL = "gemini-2.5-flash"


@pytest.fixture
def provider(fake_gemini, settings):
    settings.GEMINI_API_KEY = API_KEY
    settings.GEMINI_BASE_URL = fake_gemini.url
    settings.GEMINI_TIMEOUT_S = 5
    reset_provider()
    yield get_provider()
    reset_provider()


def generate(provider, prompt: str = "hello", **fields):
    return asyncio.run(provider.generate(Request(model=MODEL, prompt=prompt, **fields)))


def failure(provider, prompt: str = "hello", **fields) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        generate(provider, prompt, **fields)
    assert API_KEY not in str(caught.value)
    assert API_KEY not in caught.value.message
    return caught.value


def test_it_returns_the_answer_with_token_counts_and_model_version(provider):
    response = generate(provider, "three little words")

    assert response.text == "ECHO: three little words"
    assert response.finish_reason == "STOP"
    assert (response.prompt_tokens, response.output_tokens) == (3, 4)
    assert response.model_version == MODEL


def test_it_sends_the_history_as_alternating_turns_before_the_prompt(provider, fake_gemini):
    history = (("first", "ECHO: first"), ("second", "[turn 2] ECHO: second"))

    response = generate(provider, "third", history=history)

    assert response.text == "[turn 3] ECHO: third"
    contents = fake_gemini.stats.log[-1].body["contents"]
    assert [(c["role"], c["parts"][0]["text"]) for c in contents] == [
        ("user", "first"), ("model", "ECHO: first"),
        ("user", "second"), ("model", "[turn 2] ECHO: second"),
        ("user", "third"),
    ]


def test_system_instruction_temperature_and_max_tokens_reach_the_server(provider, fake_gemini):
    response = generate(provider, "one two three four", system_instruction="Be terse.",
                        temperature=0.25, max_output_tokens=3)

    body = fake_gemini.stats.log[-1].body
    assert body["systemInstruction"]["parts"][0]["text"] == "Be terse."
    assert body["generationConfig"] == {"temperature": 0.25, "maxOutputTokens": 3}
    assert (response.text, response.finish_reason) == ("ECHO: one two", "MAX_TOKENS")


def test_a_response_schema_goes_to_a_2_5_model_verbatim_as_response_json_schema(
        provider, fake_gemini):
    schema = {"type": "object", "properties": {"echo": {"type": "string"},
                                               "score": {"type": "integer", "minimum": 1,
                                                         "maximum": 5}},
              "required": ["echo", "score"]}

    response = generate(provider, "a row", response_schema=schema)

    assert json.loads(response.text) == structured_answer(schema, "a row")
    config = fake_gemini.stats.log[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == schema
    assert "responseSchema" not in config


def test_an_older_model_gets_the_schema_as_response_schema(provider, fake_gemini):
    schema = {"type": "object", "properties": {"label": {"type": "string",
                                                         "enum": ["a", "b"]},
                                               "n": {"type": "integer"}},
              "required": ["label"], "propertyOrdering": ["label", "n"]}

    response = asyncio.run(provider.generate(Request(model="gemini-2.0-flash", prompt="x",
                                                     response_schema=schema)))

    assert json.loads(response.text)["label"] in ("a", "b")
    config = fake_gemini.stats.log[-1].body["generationConfig"]
    assert config["responseSchema"]["properties"]["label"]["type"].upper() == "STRING"
    # google-genai 3.4 writes this one in snake_case; Google's JSON parsing takes both spellings.
    sent = config["responseSchema"]
    assert sent.get("propertyOrdering", sent.get("property_ordering")) == ["label", "n"]
    assert "responseJsonSchema" not in config


def test_a_429_is_retryable_with_the_servers_delay_and_quota(provider, fake_gemini):
    fake_gemini.configure(error_rate=1, error_mix={429: 1}, retry_delay_s=2)

    error = failure(provider)

    assert isinstance(error, RetryableError)
    assert (error.status, error.retry_after, error.quota_id) == (429, 2.0, MINUTE_QUOTA_ID)
    assert not error.is_daily_quota


def test_a_fractional_retry_delay_is_parsed(provider, fake_gemini):
    fake_gemini.configure(error_rate=1, error_mix={429: 1}, retry_delay_s=1.5)

    assert failure(provider).retry_after == 1.5


def test_an_exhausted_daily_quota_is_recognised(provider, fake_gemini):
    fake_gemini.configure(daily_quota_exhausted=True)

    error = failure(provider)

    assert isinstance(error, RetryableError)
    assert error.quota_id == DAY_QUOTA_ID
    assert error.is_daily_quota


def test_a_503_is_retryable_and_sent_exactly_once(provider, fake_gemini):
    fake_gemini.configure(error_rate=1, error_mix={503: 1})

    error = failure(provider)

    assert isinstance(error, RetryableError)
    assert error.status == 503
    assert fake_gemini.stats.total == 1


def test_a_500_is_retryable_and_sent_exactly_once(provider, fake_gemini):
    fake_gemini.configure(error_rate=1, error_mix={500: 1})

    assert isinstance(failure(provider), RetryableError)
    assert fake_gemini.stats.total == 1


def test_a_400_is_permanent_with_the_apis_message(provider, fake_gemini):
    fake_gemini.configure(fail_permanently=["bad"])

    error = failure(provider, "a bad row")

    assert isinstance(error, PermanentError)
    assert error.status == 400
    assert "Request contains an invalid argument." in error.message


def test_a_rejected_api_key_fails_the_whole_batch(provider, fake_gemini):
    fake_gemini.configure(require_key="another-key")

    error = failure(provider)

    assert isinstance(error, ConfigurationError)
    assert "API key not valid" in error.message


def test_a_prompt_blocked_for_safety_is_permanent(provider, fake_gemini):
    fake_gemini.configure(block_safety=["nasty"])

    error = failure(provider, "a nasty row")

    assert isinstance(error, PermanentError)
    assert "SAFETY" in error.message


def test_an_answer_stopped_for_safety_is_permanent(provider, fake_gemini):
    fake_gemini.configure(finish_safety=["risky"])

    error = failure(provider, "a risky row")

    assert isinstance(error, PermanentError)
    assert error.message == "The model returned no text (finish reason: SAFETY)"


def test_an_empty_answer_is_permanent(provider, fake_gemini):
    fake_gemini.configure(empty_answer=["void"])

    error = failure(provider, "a void row")

    assert isinstance(error, PermanentError)
    assert "finish reason: STOP" in error.message


def test_a_slow_server_times_out_as_retryable(fake_gemini, settings):
    fake_gemini.configure(latency_ms=2000)
    settings.GEMINI_API_KEY = API_KEY
    settings.GEMINI_BASE_URL = fake_gemini.url
    settings.GEMINI_TIMEOUT_S = 0.3
    reset_provider()

    error = failure(get_provider())

    assert isinstance(error, RetryableError)
    assert "timed out" in error.message
    assert fake_gemini.stats.total == 1


def test_a_refused_connection_is_retryable(provider, fake_gemini):
    fake_gemini.stop()

    error = failure(provider)

    assert isinstance(error, RetryableError)
    assert error.status is None


def test_a_server_outage_and_recovery_need_no_new_provider(provider, fake_gemini):
    assert generate(provider).text == "ECHO: hello"
    fake_gemini.stop()
    assert isinstance(failure(provider), RetryableError)
    fake_gemini.start()

    assert generate(provider).text == "ECHO: hello"


def test_a_missing_api_key_is_a_configuration_error(settings):
    settings.GEMINI_API_KEY = ""
    reset_provider()

    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY is not set"):
        get_provider()
    with pytest.raises(ConfigurationError):
        GeminiProvider(api_key="")


def test_a_base_url_without_scheme_is_a_configuration_error(settings):
    settings.GEMINI_API_KEY = API_KEY
    settings.GEMINI_BASE_URL = "localhost:1"
    reset_provider()

    error = failure(get_provider())

    assert isinstance(error, ConfigurationError)
    reset_provider()


def test_get_provider_is_cached_until_the_settings_change(provider, settings):
    assert get_provider() is provider

    settings.GEMINI_TIMEOUT_S = 9

    assert get_provider() is not provider


def test_one_provider_works_across_repeated_event_loops(provider, fake_gemini):
    async def many(start: int) -> list[str]:
        requests = [Request(model=MODEL, prompt=f"row {start + i}") for i in range(20)]
        return [r.text for r in await asyncio.gather(*map(provider.generate, requests))]

    for start in (0, 100, 200):
        texts = asyncio.run(many(start))
        assert texts == [f"ECHO: row {start + i}" for i in range(20)]
    assert fake_gemini.stats.by_status == {200: 60}


def test_aclose_releases_the_loops_connections_and_keeps_the_provider_usable(provider,
                                                                             fake_gemini):
    async def run_then_close() -> None:
        await provider.generate(Request(model=MODEL, prompt="hi"))
        assert fake_gemini.snapshot()["open_connections"] == 1
        await provider.aclose()
        await asyncio.sleep(0.05)
        assert fake_gemini.snapshot()["open_connections"] == 0

    asyncio.run(run_then_close())

    assert generate(provider).text == "ECHO: hello"


def test_concurrent_requests_spread_over_small_pools_that_aclose_releases(provider,
                                                                          fake_gemini):
    # httpcore looks at every connection of a pool on each request: many small pools keep
    # that cheap (batches.providers.http.Pools).
    from batches.providers.http import POOLS

    fake_gemini.configure(latency_ms=100)
    concurrency = 4 * POOLS

    async def waves_then_close() -> list[str]:
        texts = []
        for wave in range(3):
            requests = [Request(model=MODEL, prompt=f"row {wave}.{i}")
                        for i in range(concurrency)]
            texts += [r.text for r in await asyncio.gather(*map(provider.generate, requests))]
        # Each pool keeps its own connections for the next wave: no more than one per request
        # in flight was opened, however the requests were spread over the pools.
        assert fake_gemini.snapshot()["open_connections"] == concurrency
        await provider.aclose()
        await asyncio.sleep(0.05)
        assert fake_gemini.snapshot()["open_connections"] == 0
        return texts

    texts = asyncio.run(waves_then_close())
    assert texts == [f"ECHO: row {w}.{i}" for w in range(3) for i in range(concurrency)]
    assert fake_gemini.stats.by_status == {200: 3 * concurrency}

    async def two_at_a_time() -> None:
        for wave in range(5):
            await asyncio.gather(*(provider.generate(Request(model=MODEL, prompt=f"{wave}.{i}"))
                                   for i in range(2)))
        # A low concurrency does not open a connection in every pool.
        assert fake_gemini.snapshot()["open_connections"] == 2
        await provider.aclose()

    asyncio.run(two_at_a_time())


def test_a_connection_dropped_mid_request_is_retryable(provider, fake_gemini):
    fake_gemini.configure(latency_ms=1000)
    threading.Timer(0.2, fake_gemini.stop).start()

    error = failure(provider)

    assert isinstance(error, RetryableError)
    assert "connection failed" in error.message


def test_retry_delays_are_read_from_retry_info_or_a_retry_after_header():
    def info(delay: str) -> list[dict]:
        return [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]

    assert _retry_delay(info("38s")) == 38.0
    assert _retry_delay(info("0.25s")) == 0.25
    assert _retry_delay(info("soon")) is None
    assert _retry_after_header(SimpleNamespace(headers={"retry-after": "3"})) == 3.0
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < _retry_after_header(SimpleNamespace(headers={"retry-after": in_a_minute})) <= 60
    assert _retry_after_header(SimpleNamespace(headers={})) is None


@pytest.mark.parametrize("base_url", [
    "ftp://proxy-user:proxy-secret@localhost:1/v1?token=query-secret",  # not usable
    "http://proxy-user:proxy-secret@127.0.0.1:1/v1?token=query-secret",  # nothing listening
])
def test_errors_show_the_base_url_without_credentials_or_query(base_url):
    error = failure(GeminiProvider(api_key=API_KEY, base_url=base_url, timeout_s=5))
    message = str(error)
    assert "proxy-secret" not in message and "query-secret" not in message
    assert "proxy-user" not in message


def test_public_url_keeps_scheme_host_port_and_path():
    from batches.providers.gemini import public_url

    assert public_url("https://u:p@gw.example.com:8443/v1?key=k#f") == "https://gw.example.com:8443/v1"
    assert public_url("http://[::1]:8765") == "http://[::1]:8765"


def test_grounding_tools_reach_the_server_and_the_sources_come_back(provider, fake_gemini):
    response = generate(provider, "See https://a.example/x please",
                        tools=("google_search", "url_context"))
    assert fake_gemini.stats.log[-1].body["tools"] == [{"googleSearch": {}}, {"urlContext": {}}]
    assert [s.uri for s in response.sources] == [
        "https://a.example/x", "https://example.com/search/see-https%3A%2F%2Fa.example%2Fx-please",
        "https://example.org/wiki/see-https%3A%2F%2Fa.example%2Fx-please"]
    assert response.sources[0].title == "a.example"
    assert generate(provider, "no tools").sources == ()
    assert "tools" not in fake_gemini.stats.log[-1].body


def test_sources_are_deduplicated_capped_and_only_successful_url_reads_count():
    from google.genai import types

    from batches.providers.gemini import MAX_SOURCE_URI, MAX_SOURCES, _sources

    web = [types.GroundingChunk(web=types.GroundingChunkWeb(uri=f"https://s.example/{i % 60}",
                                                            title=" T ", domain="s.example"))
           for i in range(120)]
    web.append(types.GroundingChunk(web=types.GroundingChunkWeb(uri="https://x/" + "a" * 3000)))
    candidate = types.Candidate(
        grounding_metadata=types.GroundingMetadata(grounding_chunks=web[:3] + web[-1:]),
        url_context_metadata=types.UrlContextMetadata(url_metadata=[
            types.UrlMetadata(retrieved_url="https://ok.example",
                              url_retrieval_status="URL_RETRIEVAL_STATUS_SUCCESS"),
            types.UrlMetadata(retrieved_url="https://bad.example",
                              url_retrieval_status="URL_RETRIEVAL_STATUS_ERROR")]))
    found = _sources(candidate)
    assert [s.uri for s in found[:3]] == [f"https://s.example/{i}" for i in range(3)]
    assert found[0].title == "T" and len(found[3].uri) == MAX_SOURCE_URI
    assert found[-1].uri == "https://ok.example" and len(found) == 5
    many = types.Candidate(grounding_metadata=types.GroundingMetadata(grounding_chunks=web))
    assert len(_sources(many)) == MAX_SOURCES
