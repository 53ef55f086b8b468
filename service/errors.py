"""Domain errors, free of any HTTP framework.

Every kind of problem the service answers itself is defined here, once; domain code and the
HTTP layer raise these, and ``labcrunch_service.http.problems`` turns each into an RFC 9457
``application/problem+json`` answer. ``status`` is the HTTP status the error maps to,
``title`` a short fixed summary of the kind, ``detail`` what exactly was wrong, and
``errors`` optional field-level entries ``{"loc": [...], "msg": ..., "type": ...}``
(extra keys such as ``line`` and ``column`` are allowed).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

PROBLEM_TYPE_BASE = "https://labcrunch.dev/problems/"


class LabcrunchError(Exception):
    status: int = 500
    title: str = "Internal error"
    slug: str = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug


class InvalidInput(LabcrunchError):
    """The request is well-formed JSON but asks for something impossible or unsupported."""

    status = 422
    title = "Invalid input"
    slug = "invalid-input"


class LimitExceeded(LabcrunchError):
    """The request asks for more work than the configured limits allow.

    ``limit`` names the setting (as listed in ``/v1/info``), ``value`` what was asked.
    """

    status = 413
    title = "Limit exceeded"
    slug = "limit-exceeded"

    def __init__(self, detail: str, *, limit: str, maximum: Any, value: Any = None, **kw: Any):
        super().__init__(detail, limit=limit, maximum=maximum, value=value, **kw)


class Unauthorized(LabcrunchError):
    """A /v1 request without one of the configured API keys."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class NotFound(LabcrunchError):
    status = 404
    title = "Not found"
    slug = "not-found"


class NoResult(LabcrunchError):
    """A job's result was asked for while it has none: queued, running, or cancelled."""

    status = 409
    title = "No result"
    slug = "no-result"


class JobInterrupted(LabcrunchError):
    """The server stopped while a job ran, and again after the job was queued once more."""

    status = 503
    title = "Job interrupted"
    slug = "job-interrupted"


class Busy(LabcrunchError):
    """Every compute slot and queue place is taken; try again after ``retry_after`` seconds."""

    status = 429
    title = "Too many requests"
    slug = "busy"

    def __init__(self, detail: str, *, retry_after: int = 1):
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


class NotReady(LabcrunchError):
    """Start-up warm-up is still running (``/readyz``)."""

    status = 503
    title = "Not ready"
    slug = "not-ready"


class ComputeTimeout(LabcrunchError):
    """A job ran past its wall-time limit."""

    status = 503
    title = "Computation timed out"
    slug = "timeout"


class WorkerLost(LabcrunchError):
    """The worker process running a job died (a crash, the kernel's OOM killer) and the job
    could not be run again elsewhere."""

    status = 503
    title = "Worker lost"
    slug = "worker-lost"


class ShuttingDown(LabcrunchError):
    """The service stopped before this request's computation finished (SIGTERM, grace period
    over); another instance, or this one restarted, will answer it."""

    status = 503
    title = "Shutting down"
    slug = "shutting-down"


class Cancelled(LabcrunchError):
    """The job was cancelled before it finished (its caller went away, or asked to stop it)."""

    status = 409
    title = "Cancelled"
    slug = "cancelled"


class BackendUnavailable(LabcrunchError):
    """A requested backend (e.g. TensorFlow) is not installed or failed to start."""

    status = 503
    title = "Backend unavailable"
    slug = "backend-unavailable"


E = TypeVar("E", bound=LabcrunchError)


def rooted(error: E, root: str, roots: Mapping[str, str] | None = None) -> E:
    """A copy of ``error`` whose ``errors[].loc`` start with where the request carried them:
    ``root`` (``"body"``, ``"query"``), or ``roots[loc[0]]`` for a field carried elsewhere.
    Domain code names fields relative to its inputs (``["expression"]``, ``["at", "x"]``); the
    HTTP edge knows the part of the request each came in."""
    if not error.errors:
        return error
    roots = roots or {}
    copy = type(error).__new__(type(error), *error.args)
    copy.__dict__.update(vars(error))
    copy.errors = [{**e, "loc": [roots.get(e["loc"][0], root) if e["loc"] else root, *e["loc"]]}
                   for e in error.errors]
    return copy


@contextmanager
def located(root: str, roots: Mapping[str, str] | None = None) -> Iterator[None]:
    """Re-raise a :class:`LabcrunchError` from the block with its ``loc`` rooted (see :func:`rooted`).
    The error is copied, not changed: a cache may hand the same exception to other callers."""
    try:
        yield
    except LabcrunchError as error:
        if not error.errors:
            raise
        raise rooted(error, root, roots).with_traceback(error.__traceback__) from None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean `expression`?"`` naming the closest of ``choices`` to a misspelled
    ``word`` (the same letters in another case first, then :mod:`difflib`'s closest, up to
    three), or ``""`` when none is close. One wording for unknown functions and unknown fields."""
    choices = sorted(set(choices))
    same = [c for c in choices if c.lower() == word.lower() and c != word]
    close = same or difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if not close:
        return ""
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
