"""The one way a route answers with data: JSON (non-finite numbers as the documented strings), or
a binary array format when the request's ``Accept`` asks for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from labcrunch_service import encoding

JSON_MEDIA_TYPE = "application/json"


def json_response(payload: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None,
                  media_type: str = JSON_MEDIA_TYPE) -> Response:
    """``payload`` (dicts, lists, numpy arrays and scalars) as JSON; NaN/±inf as strings."""
    return Response(encoding.dumps(encoding.jsonable(payload)), status_code=status_code,
                    headers=dict(headers or {}), media_type=media_type)


class BuffersResponse(Response):
    """A body sent as the buffers it is made of, at most ``SEND_BYTES`` per message: a large
    answer is never joined into one bytes object, and the server's flow control lets each
    piece go straight to the socket instead of being copied whole into its write buffer.
    ``parts`` is the body (``body`` stays empty: joining it would be the copy this avoids)."""

    SEND_BYTES = 1 << 20

    def __init__(self, parts: Sequence[bytes | memoryview], *, media_type: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(b"", media_type=media_type, headers=dict(headers or {}))
        self.parts = [memoryview(part).cast("B") for part in parts]
        self.headers["content-length"] = str(sum(len(part) for part in self.parts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        for part in self.parts:
            for start in range(0, len(part), self.SEND_BYTES):
                await send({"type": "http.response.body", "more_body": True,
                            "body": part[start:start + self.SEND_BYTES]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()


def npz_response(arrays: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> Response:
    """Named arrays as one ``.npz`` (stored, no pickles); IEEE NaN/±inf travel as they are."""
    return BuffersResponse(encoding.npz_parts(arrays), media_type=encoding.NPZ_MEDIA_TYPE,
                           headers=headers)


def npy_response(array: Any, *, headers: Mapping[str, str] | None = None) -> Response:
    """One array as ``.npy`` (no pickles)."""
    return BuffersResponse(encoding.npy_parts(array), media_type=encoding.NPY_MEDIA_TYPE,
                           headers=headers)


def accepts(request: Request, media_type: str) -> bool:
    """Whether the request's ``Accept`` header names ``media_type``."""
    return media_type in request.headers.get("accept", "")
