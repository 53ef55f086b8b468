"""One exception class per kind of failure; each carries status, problem body and request id."""

from __future__ import annotations

from typing import Any


class LabcrunchError(Exception):
    """Base of every client error."""


class APIConnectionError(LabcrunchError):
    """The server could not be reached (refused, reset, DNS)."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.status: int | None = None
        self.problem: dict[str, Any] | None = None


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class APIStatusError(LabcrunchError):
    """The server answered with an error status; ``problem`` is its RFC 9457 body."""

    def __init__(self, status: int, problem: dict[str, Any], request_id: str | None) -> None:
        self.status = status
        self.problem = problem
        self.request_id = request_id
        self.detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        self.errors = problem.get("errors") or []
        super().__init__(f"{status} {problem.get('title', '')}: {self.detail} (request id {request_id})")


class BadRequestError(APIStatusError):
    """400."""


class AuthenticationError(APIStatusError):
    """401 / 403: missing or wrong API key."""


class NotFoundError(APIStatusError):
    """404."""


class RequestTooLargeError(APIStatusError):
    """413: the body or the requested work is over a server limit (``problem['limit']``)."""


class ValidationError(APIStatusError):
    """422: invalid input; ``errors`` lists each field at fault."""


class RateLimitError(APIStatusError):
    """429: the server's compute queue is full (retried automatically, honouring Retry-After)."""


class InternalServerError(APIStatusError):
    """5xx."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    413: RequestTooLargeError,
    422: ValidationError,
    429: RateLimitError,
}


def error_for_status(status: int, problem: dict[str, Any], request_id: str | None) -> APIStatusError:
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(status, problem, request_id)
