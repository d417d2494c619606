"""Model providers: the interface in base, Gemini in gemini."""

from batches.providers.base import (
    Attachment,
    ConfigurationError,
    PermanentError,
    Provider,
    ProviderError,
    Request,
    Response,
    RetryableError,
    UploadedFile,
)

__all__ = [
    "Attachment",
    "ConfigurationError",
    "PermanentError",
    "Provider",
    "ProviderError",
    "Request",
    "Response",
    "RetryableError",
    "UploadedFile",
]
