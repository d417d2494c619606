"""The fake OpenAI-compatible server over plain HTTP: its answers, knobs and control routes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from batches.fake_gemini.structured import structured_answer
from batches.fake_openai import CONTROL_HEADER, FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]},
                                           "n": {"type": "integer"}},
          "required": ["label", "n"], "additionalProperties": False}


@pytest.fixture
def fake():
    with FakeOpenAI(models=("gpt-test", "llama3")) as server:
        yield server


def chat(fake, *texts: str, key: str | None = "k", model: str = "gpt-test", **body):
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.post(f"{fake.base_url}/chat/completions", headers=headers,
                       json={"model": model, "messages": messages, **body})


def test_it_answers_a_chat_completion_with_the_echo_and_word_counts(fake):
    response = chat(fake, "hello brave new world")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-test"
    assert body["choices"][0]["message"]["content"] == "ECHO: hello brave new world"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"],
            body["usage"]["total_tokens"]) == (4, 5, 9)


def test_a_conversation_is_answered_with_its_turn_number(fake):
    reply = chat(fake, "one", "ECHO: one", "two").json()
    assert reply["choices"][0]["message"]["content"] == "[turn 2] ECHO: two"


def test_max_tokens_cuts_the_answer_and_says_length(fake):
    reply = chat(fake, "a b c d e f", max_tokens=3).json()
    assert reply["choices"][0]["message"]["content"] == "ECHO: a b"
    assert reply["choices"][0]["finish_reason"] == "length"


def test_a_json_schema_request_gets_json_derived_from_the_schema_and_prompt(fake):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}}
    reply = chat(fake, "row 7", response_format=fmt).json()
    import json
    assert json.loads(reply["choices"][0]["message"]["content"]) == structured_answer(
        SCHEMA, "row 7")


def test_it_lists_its_models_and_404s_others(fake):
    listed = httpx2.get(f"{fake.base_url}/models", headers={"Authorization": "Bearer k"})
    assert [m["id"] for m in listed.json()["data"]] == ["gpt-test", "llama3"]
    missing = chat(fake, "x", model="gpt-9")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_it_checks_the_key(fake):
    assert chat(fake, "x", key=None).status_code == 401
    fake.configure(require_key="right")
    assert chat(fake, "x", key="wrong").status_code == 401
    assert chat(fake, "x", key="right").status_code == 200


def test_a_429_carries_retry_after_and_only_the_first_n_times(fake):
    fake.configure(rate_limit_times={"#rl": 2}, retry_after_s=3)
    first, second, third = (chat(fake, "go #rl") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["retry-after"] == "3"
    assert first.json()["error"]["type"] == "rate_limit_exceeded"


def test_an_error_share_is_drawn_from_the_mix_deterministically(fake):
    fake.configure(error_rate=0.5, error_mix={503: 1})
    statuses = [chat(fake, f"p{i}").status_code for i in range(40)]
    assert set(statuses) == {200, 503} and 8 < statuses.count(503) < 32
    fake.reset()  # the same prompts seen afresh get the same answers
    assert [chat(fake, f"p{i}").status_code for i in range(40)] == statuses


def test_latency_holds_each_answer(fake):
    fake.configure(latency_ms=150)
    start = time.monotonic()
    chat(fake, "slow")
    assert time.monotonic() - start >= 0.15


def test_the_request_log_keeps_each_requests_time_status_and_body(fake):
    fake.configure(fail_permanently=["#bad"])
    chat(fake, "fine")
    chat(fake, "x #bad")
    log = fake.snapshot(log=True)["log"]
    assert [(e["prompt"], e["status"]) for e in log] == [("fine", 200), ("x #bad", 400)]
    assert log[0]["time"] <= log[1]["time"]
    assert log[0]["body"]["messages"] == [{"role": "user", "content": "fine"}]


def test_the_control_routes_need_the_servers_key(fake):
    root = fake.url
    assert httpx2.get(f"{root}/_stats").status_code == 403
    assert httpx2.post(f"{root}/_config", json={"down": True}).status_code == 403
    ok = httpx2.post(f"{root}/_config", json={"down": True}, headers=fake.control_headers)
    assert ok.status_code == 200 and ok.json()["down"] is True
    assert chat(fake, "x").status_code == 503
    bad = httpx2.post(f"{root}/_config", json={"nope": 1}, headers=fake.control_headers)
    assert bad.status_code == 400


def test_the_command_serves_until_stopped():
    process = subprocess.Popen(
        [sys.executable, "manage.py", "fake_openai", "--port", "0", "--models", "m1",
         "--control-key", "ctl"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        reply = httpx2.post(f"{url}/chat/completions", headers={"Authorization": "Bearer k"},
                            json={"model": "m1", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.json()["choices"][0]["message"]["content"] == "ECHO: hi"
        stats = httpx2.get(url.removesuffix("/v1") + "/_stats", headers={CONTROL_HEADER: "ctl"})
        assert stats.json()["total_requests"] == 1
    finally:
        process.terminate()
        process.wait(10)


def test_demo_answers_are_the_fake_geminis_plausible_ones(fake):
    from batches.fake_gemini import demo

    fake.configure(demo_answers=True)
    prompt = "Review: Lovely shoes, very comfortable (5 stars)"
    text = chat(fake, prompt).json()["choices"][0]["message"]["content"]
    assert text == demo.text_answer(prompt)
