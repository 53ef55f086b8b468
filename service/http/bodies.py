"""Request bodies: JSON validated in one step (off the event loop when large), or one binary array
format (.npy / .npz) beside JSON.

Every JSON body is parsed and validated by pydantic in one pass (``model_validate_json``): a body
over ``_INLINE_JSON_BYTES`` in a worker thread, never on the event loop that also answers
/livez. Routes with a pydantic body parameter get this from :class:`JsonBodyRoute` (every domain
router's ``route_class``); routes that also take a binary body call :func:`json_or_binary`.

Parsing JSON builds Python objects, and that holds the interpreter lock for much of the parse even
in a thread (a 64 MB body stalled the loop ~0.5-0.8 s of its ~1.5 s); ``limits.max_json_body_bytes``
therefore bounds every JSON body, and large arrays travel as .npy/.npz, which load without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from labcrunch_service.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

# Below this size validating takes well under a millisecond: the thread hop would cost more.
_INLINE_JSON_BYTES = 256 * 1024


def media_type_of(content_type: str | None) -> str:
    """The media type of a Content-Type value; a body without one is read as JSON."""
    return (content_type or "application/json").split(";")[0].strip().lower()


def media_type(request: Request) -> str:
    return media_type_of(request.headers.get("content-type"))


def is_json(kind: str) -> bool:
    return kind == "application/json" or kind.endswith("+json")


def _validate(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        return adapter.validate_json(body or b"null")
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@functools.cache
def _adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(model)


async def parse_json(adapter: TypeAdapter[Any], body: bytes) -> Any:
    """``body`` validated by ``adapter`` (422 with ``loc`` from ``body``), in a worker thread when large."""
    if len(body) > _INLINE_JSON_BYTES:
        return await run_in_threadpool(_validate, adapter, body)
    return _validate(adapter, body)


class _ValidatedJsonRequest(Request):
    """A request that validates its JSON body with :func:`parse_json`; ``json()`` is the model."""

    _validated: Any

    async def validate(self, adapter: TypeAdapter[Any]) -> None:
        body = await self.body()
        if body and self.headers.get("content-type") and is_json(media_type(self)):
            self._validated = await parse_json(adapter, body)

    async def json(self) -> Any:
        if hasattr(self, "_validated"):
            return self._validated
        return await super().json()


class JsonBodyRoute(APIRoute):
    """A route whose pydantic body is validated by :func:`parse_json` before FastAPI sees it.

    FastAPI itself would ``json.loads`` the body and validate the objects on the event loop; here
    it is handed the validated model, which it takes as it is (pydantic does not validate a model
    instance again). Bodies that are not JSON, or empty, reach FastAPI unchanged, as do routes
    without a body.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        adapter: TypeAdapter[Any] = TypeAdapter(self.body_field.field_info.annotation)

        async def validate_then_handle(request: Request) -> Response:
            validated = _ValidatedJsonRequest(request.scope, request.receive)
            await validated.validate(adapter)
            return await handler(validated)

        return validate_then_handle


async def json_or_binary(request: Request, model: type[M], binary_media_type: str) -> M | bytes:
    """The body as a validated ``model`` (JSON), or its raw bytes when it is ``binary_media_type``.

    Options travel in the JSON body, or as query parameters beside a binary body — never both.
    Any other Content-Type is a 415.
    """
    body = await request.body()
    kind = media_type(request)
    if kind == binary_media_type:
        return body
    if is_json(kind):
        if request.query_params:
            raise InvalidInput(
                f"With a JSON body the options go in the body; query parameters are for "
                f"{binary_media_type} bodies.",
                errors=[{"loc": ["query", name], "msg": "not allowed with a JSON body",
                         "type": "extra_forbidden"} for name in request.query_params])
        return await parse_json(_adapter(model), body)
    raise HTTPException(415, f"Content-Type {kind!r} is not accepted; send application/json or "
                             f"{binary_media_type}.")
