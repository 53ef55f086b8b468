"""Per-request context shared by middleware, handlers and log lines."""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The same id in the ASGI scope, for code that runs outside the middleware's context.
REQUEST_ID_SCOPE_KEY = "labcrunch.request_id"
