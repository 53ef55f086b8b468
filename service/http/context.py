"""Per-request context shared by middleware, handlers and log lines."""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The same id in the ASGI scope, for code that runs outside the middleware's context.
REQUEST_ID_SCOPE_KEY = "labcrunch.request_id"

#: What answering the request spent its time on, in milliseconds by name (``queue``, ``worker``,
#: ``compute``): the ``Server-Timing`` header's entries. None outside a request.
timings_var: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "timings", default=None)


def record_timings(**milliseconds: float) -> None:
    """Add to the current request's ``Server-Timing`` entries (summed when a request runs
    several computations; nothing outside a request)."""
    timings = timings_var.get()
    if timings is not None:
        for name, ms in milliseconds.items():
            timings[name] = timings.get(name, 0.0) + ms
