"""parley's one exception tree. Every error a client can see has a ``code`` and an HTTP status.

::

    ParleyError                      ERR_INTERNAL            500
    ├── ValidationFailed             ERR_VALIDATION          400 (422 for schema mismatches)
    ├── Unauthenticated              ERR_UNAUTHENTICATED     401
    ├── Forbidden                    ERR_FORBIDDEN           403
    ├── NotFound                     ERR_NOT_FOUND           404
    ├── Conflict                     ERR_CONFLICT            409
    ├── RateLimited                  ERR_RATE_LIMITED        429 (+ Retry-After)
    ├── InvalidModel                 ERR_INVALID_MODEL       400
    ├── ProviderError                ERR_PROVIDER_UNAVAILABLE 502 (it answered with an error)
    │   ├── ProviderDisconnected     ERR_PROVIDER_UNAVAILABLE 502 (the connection broke mid-answer)
    │   ├── ProviderUnavailable      ERR_PROVIDER_UNAVAILABLE 503 (unreachable or overloaded)
    │   └── ProviderTimeout          ERR_TIMEOUT             504
    ├── McpAuthorizationFailed       ERR_MCP_AUTHORIZATION   502 (an MCP server's OAuth flow)
    ├── RunTimeout                   ERR_TIMEOUT             504
    └── ConfigError                  ERR_CONFIG              500 (raised at start-up, not per request)
        ├── PortInUse                ERR_CONFIG              500 (another process listens there)
        └── ApiKeyMissing            ERR_API_KEY_MISSING     503 (a turn's provider has no key)

Every handler reads the status from the error (``exc.status``), and a failed run's event carries
its error's status (``RunFailed.status``); a failure read back from the store has only its code,
whose status is :func:`status_of`. Foreign exceptions are translated at the seam where they arise
(``raise … from exc``).
"""

from __future__ import annotations

from typing import Any, TypedDict


class ErrorInfo(TypedDict):
    """An error as a client is told it, and as a failed reply keeps it (``Message.error``)."""

    code: str
    message: str


class ParleyError(Exception):
    """Base of every error parley raises on purpose."""

    code = "ERR_INTERNAL"
    status = 500

    def __init__(self, message: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.extra = extra

    def to_dict(self) -> ErrorInfo:
        return {"code": self.code, "message": self.message}


class ValidationFailed(ParleyError):
    code = "ERR_VALIDATION"
    status = 400


class Unauthenticated(ParleyError):
    code = "ERR_UNAUTHENTICATED"
    status = 401


class Forbidden(ParleyError):
    code = "ERR_FORBIDDEN"
    status = 403


class NotFound(ParleyError):
    code = "ERR_NOT_FOUND"
    status = 404


class Conflict(ParleyError):
    code = "ERR_CONFLICT"
    status = 409


class RateLimited(ParleyError):
    code = "ERR_RATE_LIMITED"
    status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


class InvalidModel(ParleyError):
    code = "ERR_INVALID_MODEL"
    status = 400


class ProviderError(ParleyError):
    """The model's API answered with an error, or sent a stream it could not finish."""

    code = "ERR_PROVIDER_UNAVAILABLE"
    status = 502


class ProviderDisconnected(ProviderError):
    """The connection to the model's API broke before its answer ended: the provider broke the
    answer (502). Retried like :class:`ProviderUnavailable` only when no event had arrived."""


class ProviderUnavailable(ProviderError):
    """The model's API could not be reached, or is overloaded (retryable)."""

    status = 503


class ProviderTimeout(ProviderError):
    code = "ERR_TIMEOUT"
    status = 504


class McpAuthorizationFailed(ParleyError):
    """An MCP server's OAuth flow failed on the server's side (discovery, registration, the
    token exchange): nothing the caller sent was wrong."""

    code = "ERR_MCP_AUTHORIZATION"
    status = 502


class RunTimeout(ParleyError):
    code = "ERR_TIMEOUT"
    status = 504


class ConfigError(ParleyError):
    """A mistake in parley's configuration, found at start-up."""

    code = "ERR_CONFIG"
    status = 500


class PortInUse(ConfigError):
    """The address to listen on is held by another process."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is in use", host=host, port=port)
        self.host = host
        self.port = port


class ApiKeyMissing(ConfigError):
    """The provider a turn would ask needs an API key it was not given: found before the turn
    starts, so that no stream begins only to carry the model API's 401. The service is
    unavailable until the key is configured (503)."""

    code = "ERR_API_KEY_MISSING"
    status = 503


def status_of(code: str) -> int:
    """The HTTP status of ``code``: that of the most general class with it (the code of a
    failed run's event), 500 for a code of no class."""
    for cls in _tree(ParleyError):
        if cls.code == code:
            return cls.status
    return 500


def code_of(status: int) -> str:
    """The code of an HTTP status no error of the tree chose (routing, body parsing, the edge):
    the most general class's with that status; another client error is ``ERR_VALIDATION``."""
    for cls in _tree(ParleyError):
        if cls.status == status:
            return cls.code
    return ValidationFailed.code if 400 <= status < 500 else ParleyError.code


def _tree(root: type[ParleyError]) -> list[type[ParleyError]]:
    """``root`` and its subclasses, each class before its own subclasses (breadth first)."""
    found, level = [root], [root]
    while level:
        level = [sub for cls in level for sub in cls.__subclasses__()]
        found.extend(level)
    return found
