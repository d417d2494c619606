"""The result cache: a succeeded answer is reused for any later request of the same owner that is
identical in everything the model sees and everything that shapes its answer.

    key = resultcache.cache_key(owner_id, request)      # sha256 over KEY_INPUTS of the Request
    hits = resultcache.lookup(owner_id, keys)           # {key: providers.Response}, unexpired
    hits = resultcache.lookup_many([(owner_id, key), ...])  # {(owner_id, key): Response}
    resultcache.store([Entry(owner_id, key, model, response), ...])
    resultcache.purge_expired()                         # the rescue sweep calls it

Entries hold the answer itself, never a pointer to a row, so deleting a batch does not break the
batches that reused its answers. They expire after RESULT_CACHE_DAYS (0 turns the cache off).

Layer: beside the engine, which is its only writer and reader of hits. It may import models and
providers; it must never import engine, services, web, api, admin or cli.
"""

from batches.resultcache.key import KEY_INPUTS, KEYED_AS_EXTRA, NOT_IN_KEY, cache_key, key_inputs
from batches.resultcache.store import (
    Entry,
    enabled,
    fresh_after,
    lookup,
    lookup_many,
    purge_expired,
    store,
)

__all__ = ["KEYED_AS_EXTRA", "KEY_INPUTS", "NOT_IN_KEY", "Entry", "cache_key", "enabled",
           "fresh_after", "key_inputs", "lookup", "lookup_many", "purge_expired", "store"]
