"""Pure ASGI middleware: request ids with access logs, and the request-body size limit."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labcrunch_service.errors import LimitExceeded
from labcrunch_service.http.context import REQUEST_ID_SCOPE_KEY, request_id_var
from labcrunch_service.http.problems import error_response

access_log = logging.getLogger("labcrunch_service.access")

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestContextMiddleware:
    """Accept a sane ``X-Request-ID`` or make one; echo it; log one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        rid = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        # Also in the scope: an unhandled error is answered outside this middleware (by
        # Starlette's ServerErrorMiddleware), after the context variable has been reset.
        scope[REQUEST_ID_SCOPE_KEY] = rid
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %s", scope["method"], scope["path"], status,
                extra={"status": status, "method": scope["method"], "path": scope["path"],
                       "duration_ms": round((time.perf_counter() - start) * 1e3, 3)},
            )
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passes the limit, so no handler sees a stump."""


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 before the app parses them.

    A declared ``Content-Length`` is checked up front. A chunked body is counted as it streams;
    at the limit, reading the body raises instead of returning, so no route ever works on a
    truncated body (a prefix of a JSON document can itself be valid JSON), and whatever the app
    answers instead (FastAPI turns a failed body read into 400) is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self, path: str, size: int | None) -> Response:
        said = f" ({size} bytes)" if size is not None else ""
        return error_response(LimitExceeded(
            f"The request body{said} is larger than the limit of {self.max_bytes} bytes "
            "(limits.max_body_bytes).",
            limit="max_body_bytes", maximum=self.max_bytes, value=size,
        ), instance=path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refusal(scope["path"], int(declared))(scope, receive, send)
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
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def refuse() -> None:
            nonlocal refused
            if not refused:
                refused = True
                await self._refusal(scope["path"], None)(scope, receive, send)

        async def guarded_send(message: Message) -> None:
            if too_large:
                await refuse()
            else:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:  # a route that read the body itself
            await refuse()
