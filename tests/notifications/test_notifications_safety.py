"""Which URLs webhooks may go to, and the signature helpers."""

from __future__ import annotations

import pytest

from batches.notifications import safety, signing


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.10", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "224.0.0.1",
])
def test_private_loopback_link_local_and_metadata_addresses_are_refused(settings, address):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert not safety.allowed(safety._ip(address))
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert safety.allowed(safety._ip(address))


def test_public_addresses_are_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert safety.allowed(safety._ip(address))


def test_a_name_resolving_to_loopback_is_refused_at_send_time(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert safety.check_url("http://localhost:9/hook") == "http://localhost:9/hook"
    with pytest.raises(safety.UnsafeURL, match="localhost resolves to 127.0.0.1"):
        safety.resolve("localhost", 9)


@pytest.mark.parametrize("url, message", [
    ("", "Only http:// and https://"),
    ("javascript:alert(1)", "Only http:// and https://"),
    ("https:///nohost", "no host name"),
    ("http://example.com:99999/", "not a valid port"),
    ("https://example.com/" + "x" * 2000, "longer than 2000"),
])
def test_malformed_urls_are_refused_with_the_reason(url, message):
    with pytest.raises(safety.UnsafeURL, match=message):
        safety.check_url(url)


def test_a_signature_verifies_only_for_the_same_secret_body_and_a_recent_time():
    body = b'{"id": "e1"}'
    headers = signing.headers(secret="whsec_a", event_id="e1", event_type="batch.completed",
                              body=body, timestamp=1_000_000)
    stamp, signature = headers["Batchsite-Timestamp"], headers["Batchsite-Signature"]
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert signing.verify("whsec_a", timestamp=stamp, signature=signature, body=body,
                          now=1_000_010)
    assert not signing.verify("whsec_b", timestamp=stamp, signature=signature, body=body,
                              now=1_000_010)
    assert not signing.verify("whsec_a", timestamp=stamp, signature=signature, body=body + b"x",
                              now=1_000_010)
    assert not signing.verify("whsec_a", timestamp=stamp, signature=signature, body=body,
                              now=1_000_000 + 301)
