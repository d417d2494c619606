"""Model providers: the interface in base, Gemini in gemini."""

from batches.providers.base import (
    Attachment,
    ConfigurationError,
    FileUnavailable,
    PermanentError,
    Provider,
    ProviderError,
    Request,
    Response,
    RetryableError,
    Source,
    UploadedFile,
)

__all__ = [
    "Attachment",
    "ConfigurationError",
    "FileUnavailable",
    "PermanentError",
    "Provider",
    "ProviderError",
    "Request",
    "Response",
    "RetryableError",
    "Source",
    "UploadedFile",
]
