"""Gemini Batch Mode: a batch's rows sent as provider jobs at the batch-mode price.

Modules, lowest first: client (google-genai's batches and files APIs, errors mapped), submit
(claim rows with a long lease into a `ProviderJob` and create the job: inline or a JSONL file),
collect (poll jobs, write results through the engine's bulk write, the watchdog, cancel),
tasks (django-q2 entry points and the poll schedule).

It may import models, providers, costs, outputs and the engine (its claims and writes). It must
never import services, web, api, admin or cli. The face is loaded lazily: the web process
enqueues its tasks by name and must not import google-genai.
"""

from batches.lib.faces import lazy_face

_FACE = {
    "submit": "submit", "poll_all": "collect", "cancel_open_jobs": "collect",
    "ensure_schedules": "tasks", "enqueue_poll": "tasks",
}

__all__ = sorted(_FACE)

__getattr__ = lazy_face(__name__, _FACE)
