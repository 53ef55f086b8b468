"""The one way a route answers with data: JSON (non-finite numbers as the documented strings), or
a binary array format when the request's ``Accept`` asks for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from labcrunch_service import encoding

JSON_MEDIA_TYPE = "application/json"


def json_response(payload: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None,
                  media_type: str = JSON_MEDIA_TYPE) -> Response:
    """``payload`` (dicts, lists, numpy arrays and scalars) as JSON; NaN/±inf as strings."""
    return Response(encoding.dumps(encoding.jsonable(payload)), status_code=status_code,
                    headers=dict(headers or {}), media_type=media_type)


def npz_response(arrays: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> Response:
    """Named arrays as one ``.npz`` (stored, no pickles); IEEE NaN/±inf travel as they are."""
    return Response(encoding.to_npz(dict(arrays)), media_type=encoding.NPZ_MEDIA_TYPE,
                    headers=dict(headers or {}))


def npy_response(array: Any, *, headers: Mapping[str, str] | None = None) -> Response:
    return Response(encoding.to_npy(array), media_type=encoding.NPY_MEDIA_TYPE,
                    headers=dict(headers or {}))


def accepts(request: Request, media_type: str) -> bool:
    """Whether the request's ``Accept`` header names ``media_type``."""
    return media_type in request.headers.get("accept", "")
