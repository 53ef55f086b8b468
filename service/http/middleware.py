"""Pure ASGI middleware: request ids with access logs and the last-resort 500, and the
request-body size limits."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labcrunch_service.errors import LimitExceeded
from labcrunch_service.http.bodies import is_json, media_type_of
from labcrunch_service.http.context import REQUEST_ID_SCOPE_KEY, request_id_var, timings_var
from labcrunch_service.http.problems import error_response, internal_error_response
from labcrunch_service.settings import Limits

access_log = logging.getLogger("labcrunch_service.access")
log = logging.getLogger("labcrunch_service.http")

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestContextMiddleware:
    """Accept a sane ``X-Request-ID`` or make one; echo it; log one access line per request;
    say in ``Server-Timing`` where the time went until the answer started (``app``, and the
    entries the request recorded: :func:`~labcrunch_service.http.context.record_timings`).

    Also the last resort: an exception that nothing else handled is logged with the request id
    and answered 500 problem+json here, so it never reaches the server. (Re-raised, uvicorn would
    close the connection, and a keep-alive client's next request on it would fail too.) Only an
    exception after the answer has started is re-raised: closing the connection is then the one
    way to tell the client that the answer is broken.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        rid = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE_KEY] = rid
        token = request_id_var.set(rid)
        timings: dict[str, float] = {}
        timings_token = timings_var.set(timings)
        start = time.perf_counter()
        status = 500
        started = finished = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, finished
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message.setdefault("headers", [])
                timings["app"] = (time.perf_counter() - start) * 1e3
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode()),
                                      (b"server-timing", server_timing(timings).encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:
                await internal_error_response(scope["path"])(scope, receive, send_with_id)
            elif not finished:
                raise
        finally:
            access_log.info(
                "%s %s %s", scope["method"], scope["path"], status,
                extra={"status": status, "method": scope["method"], "path": scope["path"],
                       "duration_ms": round((time.perf_counter() - start) * 1e3, 3)},
            )
            request_id_var.reset(token)
            timings_var.reset(timings_token)


def server_timing(timings: Mapping[str, float]) -> str:
    """A ``Server-Timing`` header's value: ``queue;dur=0.051, compute;dur=0.8, app;dur=7.2``."""
    return ", ".join(f"{name};dur={ms:.3f}" for name, ms in timings.items())


class _BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passes the limit, so no handler sees a stump."""


class BodySizeLimitMiddleware:
    """Refuse request bodies over their route's limit with 413 before the app parses them.

    ``routes`` maps a path prefix to the name of its limit in ``limits`` (``max_<domain>_body_
    bytes``); other paths have ``max_body_bytes``, and a JSON body also ``max_json_body_bytes``.
    The 413 names the limit that applied. A declared ``Content-Length`` is checked up front. A
    chunked body is counted as it streams; at the limit, reading the body raises instead of
    returning, so no route ever works on a truncated body (a prefix of a JSON document can
    itself be valid JSON), and whatever the app answers instead (FastAPI turns a failed body
    read into 400) is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, limits: Limits, routes: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.limits = limits
        # Longest prefix first, so /v1/fit/line wins over a /v1/fit.
        self.routes = sorted((routes or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str, headers: dict[bytes, bytes]) -> tuple[str, int]:
        """The name and value of the body limit of a request to ``path``."""
        name = next((limit for prefix, limit in self.routes
                     if path == prefix or path.startswith(prefix.rstrip("/") + "/")), "max_body_bytes")
        content_type = headers.get(b"content-type", b"").decode("latin-1") or None
        json_limit = self.limits.max_json_body_bytes
        if is_json(media_type_of(content_type)) and json_limit < getattr(self.limits, name):
            name = "max_json_body_bytes"
        return name, getattr(self.limits, name)

    @staticmethod
    def _refusal(path: str, limit: tuple[str, int], size: int | None) -> Response:
        name, maximum = limit
        said = f" ({size} bytes)" if size is not None else ""
        return error_response(LimitExceeded(
            f"The request body{said} is larger than the limit of {maximum} bytes (limits.{name}).",
            limit=name, maximum=maximum, value=size,
        ), instance=path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = self.limit_for(scope["path"], headers)
        max_bytes = limit[1]
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refusal(scope["path"], limit, int(declared))(scope, receive, send)
            return

        received = 0
        too_large = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def refuse() -> None:
            nonlocal refused
            if not refused:
                refused = True
                await self._refusal(scope["path"], limit, None)(scope, receive, send)

        async def guarded_send(message: Message) -> None:
            if too_large:
                await refuse()
            else:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:  # a route that read the body itself
            await refuse()
