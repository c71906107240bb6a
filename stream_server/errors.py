"""Domain errors. They know nothing of HTTP: the transports map each kind to a status."""

from __future__ import annotations


class ServiceError(Exception):
    """A failure the client should hear about, in OpenAI's error vocabulary."""

    error_type = "invalid_request_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code


class InvalidRequest(ServiceError):
    """A missing, malformed or unsupported field."""


class AudioDecodeError(InvalidRequest):
    """The uploaded bytes are not audio we can decode."""

    default_code = "invalid_audio"


class Unauthorized(ServiceError):
    default_code = "invalid_api_key"


class Forbidden(ServiceError):
    default_code = "forbidden"


class NotFound(ServiceError):
    default_code = "not_found"


class PayloadTooLarge(ServiceError):
    default_code = "file_too_large"


class Overloaded(ServiceError):
    """No capacity now; the client may retry after `retry_after` seconds."""

    error_type = "rate_limit_error"
    default_code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class StreamRefused(Overloaded):
    """A new live stream refused by admission control (`reason`: capacity, max_streams,
    per_key). HTTP answers 429 with Retry-After; a WebSocket closes with 1013 (try again later)."""

    def __init__(self, message: str, *, reason: str, retry_after: float = 1.0, **kwargs: str | None):
        super().__init__(message, retry_after=retry_after, **kwargs)
        self.reason = reason


class InsufficientStorage(ServiceError):
    """The disk (or quota) is full: what was being stored was not kept."""

    error_type = "server_error"
    default_code = "insufficient_storage"


class NotReady(ServiceError):
    error_type = "server_error"
    default_code = "model_not_ready"


class InsufficientBalance(InvalidRequest):
    """The key's audio-seconds balance cannot cover this request."""

    default_code = "insufficient_balance"


class FieldTooLong(InvalidRequest):
    default_code = "field_too_long"

    def __init__(self, message: str, *, param: str, limit: int):
        super().__init__(message, param=param)
        self.limit = limit


class NoEligibleProvider(InvalidRequest):
    """The request's routing constraints leave no backend; `param` names the one that emptied the list."""

    default_code = "no_eligible_provider"


class ProviderUnavailable(ServiceError):
    """A backend failed in a way another backend may not (timeout, 5xx, 429, connection error).
    The router tries the next eligible one; the client sees this only when every one failed."""

    error_type = "server_error"
    default_code = "provider_unavailable"
