"""The engine: slices that claim rows with a lease, run them on asyncio through a provider,
and write results in bulk; the rescue sweep; and the django-q2 entry points (tasks).

Modules, lowest first: reuse (the result cache's hits at claim and fills at write), pick (the
first claimable rows of many batches in one statement), db (every ORM call of a slice: claims,
bulk writes, batch counts), recovery (the rescue sweep), slice
(the asyncio slice), tasks (django-q2 entry points). It may import models, prompts, providers,
limits and resultcache; it must never import services, web, api, admin or cli.

The face is loaded lazily: the web process imports `batches.engine.tasks` to enqueue work,
and must not pay for importing google-genai (about a second) that the slice needs.
"""

from batches.lib.faces import lazy_face

_FACE = {
    "run_slice": "slice", "Slice": "slice", "SliceReport": "slice", "ALONE_GRACE_S": "slice",
    "rescue": "recovery", "RescueReport": "recovery",
    "enqueue_batch": "tasks", "enqueue_slice": "tasks", "ensure_schedules": "tasks",
}

__all__ = sorted(_FACE)

__getattr__ = lazy_face(__name__, _FACE)
