"""The result cache's key: every input that reaches the model changes it; owners never share."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.utils import timezone

from batches import resultcache
from batches.models import CachedAnswer
from batches.providers import Attachment, Request, Response, Source

BASE = Request(model="gemini-2.5-flash", prompt="Say: hi", history=(("q", "a"),),
               system_instruction="Be brief.", temperature=0.2, max_output_tokens=100,
               response_schema={"type": "object"})

CHANGED = {
    "model": "gemini-2.5-pro",
    "prompt": "Say: hi!",
    "history": (("q", "b"),),
    "system_instruction": "Be long.",
    "temperature": 0.3,
    "max_output_tokens": 101,
    "response_schema": {"type": "object", "properties": {"x": {"type": "string"}}},
    "thinking": "low",
    "tools": ("google_search",),
}


def test_every_request_field_is_either_a_key_input_or_declared_irrelevant():
    fields = {f.name for f in dataclasses.fields(Request)}
    assert fields == (set(resultcache.KEY_INPUTS) | set(resultcache.KEYED_AS_EXTRA)
                      | set(resultcache.NOT_IN_KEY))
    assert set(CHANGED) == set(resultcache.KEY_INPUTS)


def test_a_request_with_documents_needs_their_digests_as_a_named_extra():
    with_pdf = dataclasses.replace(BASE, documents=(Attachment("application/pdf", b"%PDF-1"),))
    with pytest.raises(ValueError, match="documents"):
        resultcache.cache_key(1, with_pdf)
    one = resultcache.cache_key(1, with_pdf, documents=[["a" * 64, "application/pdf"]])
    other = resultcache.cache_key(1, with_pdf, documents=[["b" * 64, "application/pdf"]])
    assert one != other != resultcache.cache_key(1, BASE)


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_changing_any_input_changes_the_key(name):
    changed = dataclasses.replace(BASE, **{name: CHANGED[name]})
    assert resultcache.cache_key(1, changed) != resultcache.cache_key(1, BASE)


def test_the_same_request_has_the_same_key_and_whole_number_temperatures_match():
    assert resultcache.cache_key(1, BASE) == resultcache.cache_key(1, dataclasses.replace(BASE))
    one = dataclasses.replace(BASE, temperature=1)
    assert resultcache.cache_key(1, one) == resultcache.cache_key(
        1, dataclasses.replace(BASE, temperature=1.0))


def test_no_temperature_differs_from_temperature_zero():
    none = dataclasses.replace(BASE, temperature=None)
    zero = dataclasses.replace(BASE, temperature=0)
    assert resultcache.cache_key(1, none) != resultcache.cache_key(1, zero)


def test_extra_named_inputs_such_as_a_document_digest_change_the_key():
    plain = resultcache.cache_key(1, BASE)
    assert resultcache.cache_key(1, BASE, documents=["sha256:aa"]) != plain
    assert resultcache.cache_key(1, BASE, documents=["sha256:aa"]) != resultcache.cache_key(
        1, BASE, documents=["sha256:bb"])
    with pytest.raises(ValueError):
        resultcache.cache_key(1, BASE, prompt="again")


def test_two_owners_get_different_keys_for_the_same_request():
    assert resultcache.cache_key(1, BASE) != resultcache.cache_key(2, BASE)


def _answer(text="cached answer"):
    return Response(text=text, finish_reason="STOP", prompt_tokens=7, output_tokens=3,
                    model_version="v1")


def test_a_stored_answer_is_found_only_by_its_owner(user, other_user):
    key = resultcache.cache_key(user.pk, BASE)
    resultcache.store([resultcache.Entry(user.pk, key, BASE.model, _answer())])

    assert resultcache.lookup(user.pk, [key])[key].text == "cached answer"
    assert resultcache.lookup(other_user.pk, [key]) == {}
    # Even asked for the owner's very key, the other user's own entry is what counts.
    other_key = resultcache.cache_key(other_user.pk, BASE)
    assert other_key != key and resultcache.lookup(other_user.pk, [other_key]) == {}


def test_storing_again_replaces_the_answer(user):
    key = resultcache.cache_key(user.pk, BASE)
    resultcache.store([resultcache.Entry(user.pk, key, BASE.model, _answer("old"))])
    resultcache.store([resultcache.Entry(user.pk, key, BASE.model, _answer("new"))])
    assert resultcache.lookup(user.pk, [key])[key].text == "new"
    assert CachedAnswer.objects.count() == 1


def test_entries_expire_after_result_cache_days(user, settings):
    settings.RESULT_CACHE_DAYS = 30
    key = resultcache.cache_key(user.pk, BASE)
    resultcache.store([resultcache.Entry(user.pk, key, BASE.model, _answer())])
    CachedAnswer.objects.update(created_at=timezone.now() - timedelta(days=31))

    assert resultcache.lookup(user.pk, [key]) == {}
    assert resultcache.purge_expired() == 1
    assert not CachedAnswer.objects.exists()


def test_result_cache_days_zero_turns_the_cache_off(user, settings):
    settings.RESULT_CACHE_DAYS = 0
    key = resultcache.cache_key(user.pk, BASE)
    assert resultcache.store([resultcache.Entry(user.pk, key, BASE.model, _answer())]) == 0
    assert resultcache.lookup(user.pk, [key]) == {}


def test_tools_key_as_a_set_and_no_tools_keys_as_before_tools_existed():
    search_then_urls = dataclasses.replace(BASE, tools=("google_search", "url_context"))
    urls_then_search = dataclasses.replace(BASE, tools=("url_context", "google_search"))
    assert resultcache.cache_key(1, search_then_urls) == resultcache.cache_key(1, urls_then_search)
    assert "tools" not in resultcache.key_inputs(BASE)
    assert resultcache.key_inputs(search_then_urls)["tools"] == ["google_search", "url_context"]


def test_a_cached_answer_keeps_its_sources(user):
    key = resultcache.cache_key(user.pk, dataclasses.replace(BASE, tools=("google_search",)))
    grounded = Response(text="Acme is in Springfield.", finish_reason="STOP", prompt_tokens=7,
                        output_tokens=3, model_version="v1",
                        sources=(Source("https://example.com/acme", "example.com"),))
    resultcache.store([resultcache.Entry(user.pk, key, BASE.model, grounded)])
    assert resultcache.lookup(user.pk, [key])[key].sources == grounded.sources
