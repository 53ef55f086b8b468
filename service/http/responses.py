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


def acceptable(accept: str | None, media_type: str) -> bool:
    """Whether an ``Accept`` header (None: absent) admits ``media_type``: ``*/*``, ``type/*`` or
    the type itself, with a quality above 0."""
    if not accept:
        return True
    kind = media_type.split(";")[0].strip().lower()
    for entry in accept.split(","):
        name, *parameters = (part.strip().lower() for part in entry.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in parameters):
            continue
        if name in ("*/*", kind) or (name.endswith("/*") and kind.startswith(name[:-1])):
            return True
    return False
