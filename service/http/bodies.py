"""Request bodies that come as JSON or as one binary array format (.npy / .npz)."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from labcrunch_service.errors import InvalidInput
from labcrunch_service.http.suggestions import suggest_fields

M = TypeVar("M", bound=BaseModel)

# Validating a large JSON body takes long (~0.5 s for 64 MiB): past this size it runs in a worker
# thread, never on the event loop that also answers /livez; below it the thread hop would cost
# more than the parsing.
_INLINE_JSON_BYTES = 256 * 1024


def media_type(request: Request) -> str:
    value = request.headers.get("content-type") or "application/json"
    return value.split(";")[0].strip().lower()


def _validate(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(suggest_fields(errors, {"body": model})) from None


async def json_or_binary(request: Request, model: type[M], binary_media_type: str) -> M | bytes:
    """The body as a validated ``model`` (JSON), or its raw bytes when it is ``binary_media_type``.

    Options travel in the JSON body, or as query parameters beside a binary body — never both.
    Any other Content-Type is a 415.
    """
    body = await request.body()
    kind = media_type(request)
    if kind == binary_media_type:
        return body
    if kind == "application/json" or kind.endswith("+json"):
        if request.query_params:
            raise InvalidInput(
                f"With a JSON body the options go in the body; query parameters are for "
                f"{binary_media_type} bodies.",
                errors=[{"loc": ["query", name], "msg": "not allowed with a JSON body",
                         "type": "extra_forbidden"} for name in request.query_params])
        if len(body) > _INLINE_JSON_BYTES:
            return await run_in_threadpool(_validate, model, body)
        return _validate(model, body)
    raise HTTPException(415, f"Content-Type {kind!r} is not accepted; send application/json or "
                             f"{binary_media_type}.")
