"""A user's own defaults for new batches (models.UserSettings), as the entry points read them.

    prefs = preferences.for_user(user)            # Defaults; the server's where the user set none
    preferences.system_instruction(prefs, given)  # the instruction a new batch stores

New batches on every entry point (page, API, CLI) start from these through
services.batch_create; changing them is services.user_settings_update. With `apply_overrides`
(the design's applyOverrides) the user's instruction goes before every batch's own, once: a
batch whose instruction already starts with it (a new version of one) is left as it is.

Layer: beside costs. It may import models, languages and settings; never services or above.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from batches.models import UserSettings
from batches.providers import catalog

DEFAULT_CONCURRENCY = 16
DEFAULT_THINKING = "off"


@dataclass(frozen=True)
class Defaults:
    model: str
    system_instruction: str
    language: str
    concurrency: int
    thinking: str
    apply_overrides: bool


def stored(user) -> UserSettings:
    """The user's settings row, unsaved (all blank) when they have none yet."""
    if not getattr(user, "pk", None):  # an anonymous user has no settings of their own
        return UserSettings()
    return UserSettings.objects.filter(user=user).first() or UserSettings(user=user)


def for_user(user) -> Defaults:
    """What a new batch of `user` starts from: their settings, else the server's defaults. A
    saved model no provider offers any more falls back to GEMINI_DEFAULT_MODEL."""
    row = stored(user)
    model = row.model if row.model in catalog.known_models() else settings.GEMINI_DEFAULT_MODEL
    return Defaults(
        model=model,
        system_instruction=row.system_instruction,
        language=row.language,
        concurrency=row.concurrency or DEFAULT_CONCURRENCY,
        thinking=row.thinking or DEFAULT_THINKING,
        apply_overrides=row.apply_overrides and bool(row.system_instruction),
    )


def system_instruction(prefs: Defaults, given: str | None) -> str:
    """The system instruction a new batch stores: `given` (None: not given, the user's default)
    with the user's own instruction before it when they always apply it."""
    if given is None:
        return prefs.system_instruction
    mine = prefs.system_instruction
    if not prefs.apply_overrides or given.startswith(mine):
        return given
    return f"{mine}\n\n{given}" if given.strip() else mine
