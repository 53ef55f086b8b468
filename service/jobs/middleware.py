"""``Prefer: respond-async`` (RFC 7240) for every route at once, as pure ASGI middleware.

A request that prefers an asynchronous answer is read whole and handed to the
:class:`~labcrunch_service.jobs.manager.JobManager`, which runs its route handler in the
background. Once the handler reaches the compute runner (validation and limit checks passed),
the client gets **202 Accepted** with ``Location: /v1/jobs/{id}`` and the job document; an answer
the handler gives before that (a 4xx, or a route that computes nothing) is sent as it is, so the
preference is simply not applied. The middleware sits inside the authentication and body-size
middleware: the body is limited and the owner known before a job exists.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from labcrunch_service.http.auth import OWNER_SCOPE_KEY
from labcrunch_service.http.responses import json_response
from labcrunch_service.jobs.manager import JobManager
from labcrunch_service.jobs.store import StoredRequest

JOBS_PATH = "/v1/jobs"
#: Request headers kept with a job: they choose how its body is read and its answer encoded.
STORED_HEADERS = ("content-type", "accept")


def prefers_async(scope: Scope) -> bool:
    """Whether a ``Prefer`` header of the request names ``respond-async``."""
    for name, value in scope["headers"]:
        if name == b"prefer":
            tokens = (part.split(b"=")[0].strip().lower() for part in value.replace(b";", b",").split(b","))
            if b"respond-async" in tokens:
                return True
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def stored_request(scope: Scope) -> StoredRequest:
    headers = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key in STORED_HEADERS:
            headers[key] = value.decode("latin-1")
    return StoredRequest(method=scope["method"], path=scope["path"],
                         query_string=scope.get("query_string", b"").decode("latin-1"),
                         headers=headers)


class RespondAsyncMiddleware:
    def __init__(self, app: ASGIApp, jobs: JobManager) -> None:
        self.app = app
        self.jobs = jobs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = self.jobs
        if (scope["type"] != "http" or not manager.started
                or scope["path"].startswith(JOBS_PATH) or not prefers_async(scope)):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)

        async def call_app(job_receive: Receive, job_send: Send) -> None:
            await self.app(scope, job_receive, job_send)

        document = await manager.submit(stored_request(scope), body, scope[OWNER_SCOPE_KEY],
                                        call_app, send)
        if document is None:
            return  # answered synchronously
        location = f"{JOBS_PATH}/{document.id}"
        response = json_response(document.model_dump(mode="json"), status_code=202, headers={
            "Location": location, "Preference-Applied": "respond-async",
            "Retry-After": manager.retry_after(document) or "1"})
        await response(scope, receive, send)
