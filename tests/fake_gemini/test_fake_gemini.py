import asyncio
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest

from batches.fake_gemini import DAY_QUOTA_ID, MINUTE_QUOTA_ID, FakeGemini

ROOT = Path(__file__).resolve().parents[2]


def turns(*texts: str) -> list[dict]:
    roles = ["user", "model"]
    return [{"role": roles[i % 2], "parts": [{"text": t}]} for i, t in enumerate(texts)]


def ask(fake, *texts: str, key: str | None = "test-key", model: str = "gemini-2.5-flash",
        client: httpx2.Client | None = None, **body) -> httpx2.Response:
    headers = {"x-goog-api-key": key} if key else {}
    url = f"{fake.url}/v1beta/models/{model}:generateContent"
    return (client or httpx2).post(url, json={"contents": turns(*texts), **body}, headers=headers)


def error_details(response: httpx2.Response) -> dict[str, dict]:
    return {d["@type"].rsplit(".", 1)[1]: d for d in response.json()["error"]["details"]}


def test_it_answers_in_gemini_shape_with_the_prompt_echoed(fake_gemini):
    response = ask(fake_gemini, "hello brave new world")

    assert response.status_code == 200
    body = response.json()
    assert body["candidates"] == [{
        "content": {"role": "model", "parts": [{"text": "ECHO: hello brave new world"}]},
        "finishReason": "STOP",
        "index": 0,
    }]
    assert body["usageMetadata"] == {
        "promptTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 9}
    assert body["modelVersion"] == "gemini-2.5-flash"
    assert body["responseId"]


def test_it_accepts_the_key_as_a_query_parameter_and_any_api_version(fake_gemini):
    url = f"{fake_gemini.url}/v1/models/gemini-2.5-pro:generateContent?key=abc"
    response = httpx2.post(url, json={"contents": turns("hi")})

    assert response.status_code == 200
    assert response.json()["modelVersion"] == "gemini-2.5-pro"


def test_it_refuses_a_request_without_an_api_key(fake_gemini):
    response = ask(fake_gemini, "hi", key=None)

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_it_checks_a_specific_key_when_told_to(fake_gemini):
    fake_gemini.configure(require_key="right")

    assert ask(fake_gemini, "hi", key="wrong").status_code == 400
    assert ask(fake_gemini, "hi", key="right").status_code == 200


def test_it_says_which_turn_of_a_conversation_it_answers(fake_gemini):
    response = ask(fake_gemini, "one", "ECHO: one", "two", "[turn 2] ECHO: two", "three")

    text = response.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert text == "[turn 3] ECHO: three"
    assert fake_gemini.stats.log[-1].contents_length == 5


def test_it_answers_json_when_structured_output_is_asked_for(fake_gemini):
    response = ask(fake_gemini, "a row", generationConfig={"responseMimeType": "application/json"})

    text = response.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text) == {"echo": "a row"}


def test_it_stops_at_max_output_tokens(fake_gemini):
    response = ask(fake_gemini, "one two three four", generationConfig={"maxOutputTokens": 3})

    candidate = response.json()["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert candidate["content"]["parts"][0]["text"] == "ECHO: one two"


def test_a_429_carries_retry_info_quota_failure_and_retry_after():
    with FakeGemini(error_rate=1, error_mix={429: 1}, retry_delay_s=7,
                    retry_after_header=True) as fake:
        response = ask(fake, "hi")

    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["message"] == "Resource has been exhausted (e.g. check quota)."
    details = error_details(response)
    assert details["RetryInfo"]["retryDelay"] == "7s"
    assert details["QuotaFailure"]["violations"][0]["quotaId"] == MINUTE_QUOTA_ID
    assert response.headers["retry-after"] == "7"


def test_a_503_is_answered_in_the_real_error_shape():
    with FakeGemini(error_rate=1, error_mix={503: 1}) as fake:
        response = ask(fake, "hi")

    assert response.status_code == 503
    assert response.json()["error"]["status"] == "UNAVAILABLE"


def test_errors_depend_only_on_the_seed_and_the_prompt():
    prompts = [f"row {i}" for i in range(200)]

    def statuses(seed: int) -> list[int]:
        with FakeGemini(error_rate=0.3, seed=seed) as fake, httpx2.Client() as client:
            return [ask(fake, p, client=client).status_code for p in prompts]

    first = statuses(seed=1)
    assert statuses(seed=1) == first
    assert statuses(seed=2) != first
    assert 30 < sum(s != 200 for s in first) < 90
    assert {s for s in first if s != 200} <= {429, 500, 503}


def test_matching_prompts_fail_permanently_or_are_blocked_or_empty(fake_gemini):
    fake_gemini.configure(fail_permanently=["bad"], block_safety=["nasty"],
                          finish_safety=["risky"], empty_answer=["void"])

    bad = ask(fake_gemini, "a bad row")
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    blocked = ask(fake_gemini, "a nasty row").json()
    assert blocked["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in blocked
    risky = ask(fake_gemini, "a risky row").json()["candidates"][0]
    assert risky["finishReason"] == "SAFETY"
    assert "content" not in risky
    void = ask(fake_gemini, "a void row").json()["candidates"][0]
    assert void["finishReason"] == "STOP"
    assert "parts" not in void["content"]


def test_fail_times_fails_a_prompt_n_times_then_succeeds(fake_gemini):
    fake_gemini.configure(fail_times={"flaky": 2})

    codes = [ask(fake_gemini, "flaky row").status_code for _ in range(3)]

    assert codes == [503, 503, 200]
    assert ask(fake_gemini, "other flaky row").status_code == 503
    assert ask(fake_gemini, "steady row").status_code == 200


def test_rpm_limit_refuses_requests_until_the_window_frees():
    # A window long enough that five requests fit in it even on a loaded machine.
    with FakeGemini(rpm_limit=3, rpm_window_s=3) as fake:
        codes = [ask(fake, f"row {i}").status_code for i in range(4)]
        refused = ask(fake, "row 5")
        time.sleep(3.05)
        after = ask(fake, "row 6").status_code

    assert codes == [200, 200, 200, 429]
    delay = error_details(refused)["RetryInfo"]["retryDelay"]
    assert 0 < float(delay.removesuffix("s")) <= 3
    assert error_details(refused)["QuotaFailure"]["violations"][0]["quotaId"] == MINUTE_QUOTA_ID
    assert after == 200


def test_an_exhausted_daily_quota_names_the_per_day_quota(fake_gemini):
    fake_gemini.configure(daily_quota_exhausted=True)

    response = ask(fake_gemini, "hi")

    assert response.status_code == 429
    assert error_details(response)["QuotaFailure"]["violations"][0]["quotaId"] == DAY_QUOTA_ID


def test_the_down_switch_answers_503_to_everything(fake_gemini):
    fake_gemini.down = True
    assert ask(fake_gemini, "hi").status_code == 503

    fake_gemini.down = False
    assert ask(fake_gemini, "hi").status_code == 200


def test_stop_refuses_connections_and_start_serves_again_on_the_same_port(fake_gemini):
    url = fake_gemini.url
    fake_gemini.stop()
    with pytest.raises(httpx2.ConnectError):
        ask(fake_gemini, "hi")

    fake_gemini.start()
    assert fake_gemini.url == url
    assert ask(fake_gemini, "hi").status_code == 200


def test_http_endpoints_read_reset_and_steer_the_server(fake_gemini):
    ask(fake_gemini, "hi")
    ask(fake_gemini, "hi")
    control = httpx2.Client(headers=fake_gemini.control_headers)

    stats = control.get(f"{fake_gemini.url}/_stats?prompts=1&log=1").json()
    assert stats["total_requests"] == 2
    assert stats["by_status"] == {"200": 2}
    assert stats["by_prompt"] == {"hi": 2}
    assert stats["repeated_prompts"] == 1
    assert [entry["status"] for entry in stats["log"]] == [200, 200]
    assert stats["log"][0]["body"]["contents"] == turns("hi")

    config = control.post(f"{fake_gemini.url}/_config", json={"down": True, "latency_ms": 5})
    assert config.json()["down"] is True
    assert fake_gemini.knobs.latency_ms == 5
    assert ask(fake_gemini, "hi").status_code == 503
    assert control.post(f"{fake_gemini.url}/_config", json={"nope": 1}).status_code == 400

    assert control.post(f"{fake_gemini.url}/_reset").status_code == 200
    assert control.get(f"{fake_gemini.url}/_stats").json()["total_requests"] == 0
    assert control.get(f"{fake_gemini.url}/nowhere").status_code == 404


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
def test_the_control_routes_refuse_a_request_without_the_servers_key(fake_gemini, key):
    ask(fake_gemini, "hi")
    headers = {} if key is None else {"x-fake-gemini-key": key}
    url = fake_gemini.url
    responses = [
        httpx2.post(f"{url}/_config", json={"down": True}, headers=headers),
        httpx2.get(f"{url}/_config", headers=headers),
        httpx2.post(f"{url}/_reset", headers=headers),
        httpx2.get(f"{url}/_stats", headers=headers),
        # What a web page can send across origins: a form post with no custom header.
        httpx2.post(f"{url}/_config", content=b'{"down": true}',
                    headers={"content-type": "text/plain"}),
    ]
    assert [r.status_code for r in responses] == [403] * 5
    assert fake_gemini.knobs.down is False
    assert fake_gemini.stats.total == 1  # not reset


def test_counters_catch_a_prompt_sent_twice_at_the_same_time(fake_gemini):
    fake_gemini.configure(latency_ms=200)

    async def main() -> None:
        async with httpx2.AsyncClient() as client:
            url = f"{fake_gemini.url}/v1beta/models/m:generateContent"
            headers = {"x-goog-api-key": "k"}
            await asyncio.gather(*(
                client.post(url, json={"contents": turns(p)}, headers=headers)
                for p in ["twin", "twin", "single"]
            ))

    asyncio.run(main())

    stats = fake_gemini.stats
    assert stats.total == 3
    assert stats.by_prompt == {"twin": 2, "single": 1}
    assert stats.by_status == {200: 3}
    assert stats.max_in_flight == 3
    assert stats.prompt_max_concurrency == {"twin": 2, "single": 1}
    assert fake_gemini.snapshot()["prompts_sent_concurrently"] == ["twin"]
    assert [(e.prompt, e.contents_length, e.status) for e in stats.log][0][1:] == (1, 200)


def test_it_serves_many_concurrent_requests_over_kept_alive_connections():
    # Each round's answers wait until all 120 requests are in: no race with a slow client.
    with FakeGemini(latency_ms=10, hold_until_in_flight=120) as fake:

        async def main() -> float:
            limits = httpx2.Limits(max_connections=120, max_keepalive_connections=120)
            async with httpx2.AsyncClient(limits=limits) as client:
                url = f"{fake.url}/v1beta/models/m:generateContent"
                started = time.perf_counter()
                for round_ in range(2):
                    replies = await asyncio.gather(*(
                        client.post(url, json={"contents": turns(f"r{round_} {i}")},
                                    headers={"x-goog-api-key": "k"})
                        for i in range(120)
                    ))
                    assert all(r.status_code == 200 for r in replies)
                return time.perf_counter() - started

        elapsed = asyncio.run(main())
        stats = fake.snapshot()

    assert stats["max_in_flight"] == 120
    assert stats["connections_opened"] == 120
    assert elapsed < 30  # held one at a time, it would wait 30 s per request


def test_the_management_command_serves_until_terminated():
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FAKE_GEMINI_CONTROL_KEY": "steering-key"}
    command = [sys.executable, "manage.py", "fake_gemini", "--port", "0", "--latency-ms", "1",
               "--error-rate", "0"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=60)
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        url = match.group(0)
        response = httpx2.post(f"{url}/v1beta/models/m:generateContent",
                               json={"contents": turns("ping")}, headers={"x-goog-api-key": "k"})
        assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == "ECHO: ping"
        assert "export GEMINI_BASE_URL=" + url in lines.get(timeout=5)
        assert httpx2.get(f"{url}/_stats").status_code == 403
        stats = httpx2.get(f"{url}/_stats", headers={"x-fake-gemini-key": "steering-key"})
        assert stats.json()["total_requests"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_google_search_adds_grounding_metadata_shaped_like_the_rest_api(fake_gemini):
    body = ask(fake_gemini, "Acme head office", tools=[{"googleSearch": {}}]).json()
    grounding = body["candidates"][0]["groundingMetadata"]
    assert grounding["webSearchQueries"] == ["Acme head office"]
    assert [c["web"] for c in grounding["groundingChunks"]] == [
        {"uri": "https://example.com/search/acme-head-office", "title": "example.com"},
        {"uri": "https://example.org/wiki/acme-head-office", "title": "example.org"}]
    support = grounding["groundingSupports"][0]
    assert support["groundingChunkIndices"] == [0, 1]
    assert support["segment"]["text"] == "ECHO: Acme head office"
    assert "renderedContent" in grounding["searchEntryPoint"]
    assert "groundingMetadata" not in ask(fake_gemini, "Acme").json()["candidates"][0]


def test_url_context_reads_the_urls_in_the_prompt(fake_gemini):
    body = ask(fake_gemini, "Compare https://a.example/x and http://b.example/y.",
               tools=[{"url_context": {}}]).json()
    candidate = body["candidates"][0]
    assert candidate["urlContextMetadata"]["urlMetadata"] == [
        {"retrievedUrl": "https://a.example/x",
         "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS"},
        {"retrievedUrl": "http://b.example/y",
         "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS"}]
    assert "webSearchQueries" not in candidate["groundingMetadata"]
