"""Every error answers RFC 9457 ``application/problem+json``; no stack trace reaches a client."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from labcrunch_service.errors import (
    PROBLEM_TYPE_BASE,
    InvalidInput,
    LabcrunchError,
    LimitExceeded,
    NotFound,
    Unauthorized,
)
from labcrunch_service.http.context import request_id_var
from labcrunch_service.http.responses import json_response
from labcrunch_service.http.suggestions import route_models, suggest_fields

log = logging.getLogger("labcrunch_service.http")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: e.g. ['body', 'at', 'x'].")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem body."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="The request path.")
    request_id: str | None = None
    errors: list[FieldError] | None = Field(None, description="Field-level errors, when any.")


_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or wrong API key",
    404: "Not found",
    406: "The answer cannot have a media type the request accepts",
    409: "The resource is not in a state that has this answer",
    413: "Request body or requested work over a configured limit",
    415: "Unsupported Content-Type",
    422: "Invalid input (field-level `errors`)",
    429: "Busy: compute queue full; see Retry-After",
    500: "Internal error",
    503: "Backend unavailable or computation timed out",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each listed status documented as a problem+json body."""
    codes = codes or (401, 413, 422, 429, 500, 503)
    return {
        code: {
            "model": Problem,
            "description": _DESCRIPTIONS.get(code, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    if errors:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if v is not None})
    return json_response(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def error_response(error: LabcrunchError, *, instance: str | None = None) -> Response:
    """The problem answer of one of :mod:`labcrunch_service.errors`' kinds."""
    return problem_response(error.status, error.title, error.detail, slug=error.slug, instance=instance,
                            errors=error.errors, headers=error.headers, **error.extra)


def internal_error_response(instance: str) -> Response:
    """The answer to an exception nothing handled (the traceback is logged, never sent)."""
    return error_response(LabcrunchError("The server failed to answer this request; the error is "
                                         "logged under this request id."), instance=instance)


def _clean_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        entry = {"loc": [str(p) if not isinstance(p, int) else p for p in err.get("loc", ())],
                 "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        out.append(entry)
    return out


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


# Slugs of the HTTP errors FastAPI and Starlette raise themselves (their titles are the status
# phrases); the kinds the service also raises keep the slug of their class in errors.py.
_STATUS_SLUGS = {400: "bad-request", 405: "method-not-allowed", 406: "not-acceptable",
                 415: "unsupported-media-type",
                 **{kind.status: kind.slug for kind in (Unauthorized, NotFound, LimitExceeded)}}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(LabcrunchError)
    async def _domain(request: Request, exc: LabcrunchError) -> Response:
        log.info("request refused: %s %s", exc.status, exc.detail)
        return error_response(exc, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = suggest_fields(_clean_validation_errors(exc), route_models(request))
        invalid = InvalidInput(_summary(errors) or "The request is invalid.", errors=errors)
        return error_response(invalid, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route {request.method} {request.url.path}; see /docs."
        if exc.status_code == 405:  # Starlette names the first route's methods; a path may have several
            allowed = _allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = f"{request.method} is not a method of {request.url.path}; it takes {', '.join(allowed)}."
        return problem_response(exc.status_code, title, detail,
                                slug=_STATUS_SLUGS.get(exc.status_code, str(exc.status_code)),
                                instance=request.url.path, headers=headers)


#: The methods a 405 answer may name in Allow.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route answers on the request's path (routes may be nested routers)."""
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in request.app.router.routes)]
