"""The demo model (`make demo`): plausible, deterministic answers; the echo stays for tests."""

import json

import httpx2

from batches.fake_gemini import FakeGemini
from batches.management.commands.demo_setup import DEMO_PROMPT
from batches.prompts import parse

SCHEMA = {"type": "OBJECT", "properties": {
    "sentiment": {"type": "STRING", "enum": ["positive", "mixed", "negative"]},
    "reason": {"type": "STRING"},
    "score": {"type": "INTEGER", "minimum": 1, "maximum": 5},
    "would_buy_again": {"type": "BOOLEAN"},
}}


def review(product: str, rating: int, text: str) -> str:
    return parse(DEMO_PROMPT).render({"product": product, "rating": rating, "review": text})


def answer(fake, prompt: str, **config) -> str:
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    if config:
        body["generationConfig"] = config
    response = httpx2.post(f"{fake.url}/v1beta/models/gemini-2.5-flash:generateContent",
                           json=body, headers={"x-goog-api-key": "k"})
    return response.json()["candidates"][0]["content"]["parts"][0]["text"]


def test_the_demo_model_answers_a_review_with_a_sentiment_and_a_reason():
    happy = review("Trail running shoes", 5, "Light, grippy on wet rock, and comfortable.")
    angry = review("Espresso grinder", 1, "Arrived with a cracked burr carrier. Returned it.")
    with FakeGemini(demo_answers=True) as fake:
        first = answer(fake, happy)
        assert first.startswith("Positive — ") and "grippy on wet rock" in first
        assert answer(fake, angry).startswith("Negative — ")
        assert answer(fake, happy) == first  # deterministic
        assert "ECHO" not in first


def test_the_demo_model_fills_a_response_schema_with_values_that_fit_it():
    angry = review("Espresso grinder", 1, "Arrived with a cracked burr carrier. Returned it.")
    with FakeGemini(demo_answers=True) as fake:
        value = json.loads(answer(fake, angry, responseMimeType="application/json",
                                  responseSchema=SCHEMA))
    assert value["sentiment"] == "negative" and value["score"] == 1
    assert value["would_buy_again"] is False and value["reason"].startswith("The reviewer")


def test_tests_and_the_benchmark_still_get_the_echo(fake_gemini):
    assert answer(fake_gemini, "hello") == "ECHO: hello"
