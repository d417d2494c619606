"""What the HTTP providers share for speed: requests spread over a few small connection pools
(batches.providers.http.Pools), one TLS context."""

from contextlib import ExitStack
from itertools import count

from batches.providers.http import Pools


def test_one_request_at_a_time_keeps_one_client():
    made = count()
    pools = Pools(lambda: next(made), most=4)
    for _ in range(5):
        with pools.client() as client:
            assert client == 0
    assert pools.clients == [0]


def test_concurrent_requests_get_a_client_each_up_to_the_most_then_the_least_busy():
    made = count()
    pools = Pools(lambda: next(made), most=3)
    with ExitStack() as stack:
        taken = [stack.enter_context(pools.client()) for _ in range(7)]
        # Three clients; the next requests go to the one with the fewest in flight.
        assert taken == [0, 1, 2, 0, 1, 2, 0]
    assert pools.clients == [0, 1, 2]
    with ExitStack() as stack:
        assert stack.enter_context(pools.client()) == 0
        assert stack.enter_context(pools.client()) == 1  # 0 is busy, 1 is free: no new client
    assert pools.clients == [0, 1, 2]


def test_a_failed_request_gives_its_place_back():
    pools = Pools(object, most=2)
    try:
        with pools.client() as first:
            raise RuntimeError("the request failed")
    except RuntimeError:
        pass
    with pools.client() as again:
        assert again is first


def test_every_client_shares_one_tls_context_that_verifies_certificates(settings):
    import ssl

    from batches.providers.gemini import GeminiProvider
    from batches.providers.http import ssl_context

    context = ssl_context()
    assert context is ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    provider = GeminiProvider(api_key="k", base_url="http://127.0.0.1:9")
    # Read from google-genai's client: what its httpx clients were built with.
    api = provider._client._api_client
    assert api._async_httpx_client_args["verify"] is context
    assert api._websocket_ssl_ctx["ssl"] is context
