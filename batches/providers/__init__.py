"""Model providers: the interface in base, Gemini in gemini."""

from batches.providers.base import (
    ConfigurationError,
    PermanentError,
    Provider,
    ProviderError,
    Request,
    Response,
    RetryableError,
)

__all__ = [
    "ConfigurationError",
    "PermanentError",
    "Provider",
    "ProviderError",
    "Request",
    "Response",
    "RetryableError",
]
