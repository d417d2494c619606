"""The provider interface the engine runs rows through, and its two kinds of failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Attachment:
    """A document sent after the prompt text: its bytes inline, or a Files API URI."""

    mime_type: str
    data: bytes | None = None
    file_uri: str | None = None
    name: str = ""


@dataclass(frozen=True)
class UploadedFile:
    """A file in the provider's file store, usable by URI until it expires."""

    uri: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Request:
    model: str
    prompt: str
    # Earlier (prompt, answer) turns of a conversation, oldest first.
    history: tuple[tuple[str, str], ...] = ()
    system_instruction: str = ""
    temperature: float | None = None
    max_output_tokens: int | None = None
    # A JSON schema; asks for application/json output.
    response_schema: dict | None = None
    # "off", "low", "default" (the model decides) or a token budget (digits).
    thinking: str = "default"
    # Documents attached to the last user turn, after its text.
    documents: tuple[Attachment, ...] = ()
    # Model tools to offer: "google_search", "url_context" (providers.capabilities.TOOLS).
    tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """A web page a grounded answer rests on, as the model named it (not checked or fetched)."""

    uri: str
    title: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"uri": self.uri, "title": self.title}


@dataclass(frozen=True)
class Response:
    text: str
    finish_reason: str
    prompt_tokens: int | None
    output_tokens: int | None  # the answer (candidates), without thinking
    model_version: str
    thoughts_tokens: int | None = None
    cached_tokens: int | None = None
    # Grounding: the web sources of the answer, in the model's order, without repeats.
    sources: tuple[Source, ...] = ()


class ProviderError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(ProviderError):
    """Worth trying again later: rate limits, overload, timeouts, connection errors."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        quota_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, as the server asked
        self.status = status
        self.quota_id = quota_id

    @property
    def is_daily_quota(self) -> bool:
        """A per-day quota is spent: retrying within minutes is pointless."""
        return bool(self.quota_id) and "PerDay" in self.quota_id


class FileUnavailable(RetryableError):
    """A Files API file the request named has expired or is gone: upload it again and retry."""


class PermanentError(ProviderError):
    """The same request will fail again: bad request, refused, blocked or empty answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConfigurationError(ProviderError):
    """A batch-level problem, such as a missing API key: the whole batch fails with it."""


class Provider(Protocol):
    async def generate(self, request: Request) -> Response: ...

    async def upload_file(self, data: bytes, *, mime_type: str,
                          display_name: str) -> UploadedFile: ...
