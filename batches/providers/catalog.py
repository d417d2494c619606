"""Which provider serves a model, the models offered (grouped by provider), and what a batch on a
provider may ask for.

A model listed in OPENAI_MODELS runs on the OpenAI-compatible provider; every other model on
Gemini (the default). The SDKs are imported only when a provider is first used.
"""

from __future__ import annotations

from dataclasses import dataclass

from batches.providers.base import Provider
from batches.providers.http import setting

GEMINI = "gemini"
OPENAI = "openai"
LABELS = {GEMINI: "Gemini", OPENAI: "OpenAI-compatible"}


@dataclass(frozen=True)
class OptionError(Exception):
    """A batch option the model's provider cannot honour; `field` names the input."""

    field: str
    message: str

    def __str__(self) -> str:
        return self.message


def _listed(name: str, default: str = "") -> list[str]:
    value = setting(name, default)
    if isinstance(value, str):
        value = value.split(",")
    return [m.strip() for m in value or () if m and m.strip()]


def gemini_models() -> list[str]:
    models = _listed("GEMINI_MODELS")
    default = setting("GEMINI_DEFAULT_MODEL", "") or ""
    if default and default not in models and default not in openai_models():
        models.insert(0, default)
    return models


def openai_models() -> list[str]:
    return _listed("OPENAI_MODELS")


def provider_name(model: str) -> str:
    return OPENAI if model in openai_models() else GEMINI


def provider_for(model: str) -> Provider:
    """The process's provider for `model` (ConfigurationError when its key is missing)."""
    if provider_name(model) == OPENAI:
        from batches.providers import openai_compat

        return openai_compat.get_provider()
    from batches.providers import gemini

    return gemini.get_provider()


def default_rpm(model: str) -> int | None:
    """Requests per minute of a new batch that sets none: OPENAI_RPM or GEMINI_RPM."""
    return _limit("OPENAI_RPM" if provider_name(model) == OPENAI else "GEMINI_RPM")


def default_tpm(model: str) -> int | None:
    return _limit("OPENAI_TPM" if provider_name(model) == OPENAI else "GEMINI_TPM")


def _limit(name: str) -> int | None:
    value = setting(name, None)
    return int(value) if value not in (None, "") else None


def preload() -> None:
    """Import the SDKs of the configured providers now: a worker must not spend their import
    (seconds on a busy host) on its first row, while the leases of the rows it claimed run."""
    from batches.providers import gemini  # noqa: F401

    if openai_models():
        from batches.providers import openai_compat  # noqa: F401


def model_groups() -> list[tuple[str, list[str]]]:
    """(provider label, its models) for every provider that offers any, Gemini first."""
    openai = openai_models()
    groups = [(LABELS[GEMINI], [m for m in gemini_models() if m not in openai]),
              (LABELS[OPENAI], openai)]
    return [(label, models) for label, models in groups if models]


def known_models() -> list[str]:
    return [m for _, models in model_groups() for m in models]


def check_model(model: str) -> None:
    """OptionError naming `model` unless a provider offers it."""
    known = known_models()
    if model not in known:
        raise OptionError("model", f"Unknown model {model!r}; use one of {', '.join(known)}.")


def check_options(model: str, *, thinking: str = "off", documents: bool = False) -> None:
    """OptionError naming the field when the model's provider cannot honour an option: the
    OpenAI-compatible provider sends no thinking option and no documents (docs/providers.md)."""
    if provider_name(model) != OPENAI:
        return
    if thinking not in ("off", "default"):
        raise OptionError("thinking", f"Thinking {thinking!r} is not available on {model} (an "
                                      "OpenAI-compatible model); use off.")
    if documents:
        raise OptionError("documents", f"Documents ({{{{file:column}}}} or document rows) "
                                       f"cannot be sent to {model} (an OpenAI-compatible "
                                       "model); use a Gemini model.")
