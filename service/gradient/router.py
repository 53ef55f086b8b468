"""HTTP routes for /v1/gradient: read the body, call :func:`derivatives.gradient` through the
runner, encode the answer.

One route, two body formats both ways:

* JSON in (``{"expression": ..., "at": {...}}``), JSON out: non-finite numbers as the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (see ``labcrunch_service.encoding``).
* ``Content-Type: application/x-npz`` in: one 1-D (or 0-d) array per variable, named by the
  variable, with the options (``expression`` or ``program`` + ``function``, ``order``,
  ``backend``, ``dtype``) as query parameters -- the practical way to send 10^6 points.
* ``Accept: application/x-npz`` out (for either body): arrays ``variables`` (strings),
  ``value`` (N,), ``gradient`` (N, n), ``hessian`` (N, n, n) for order 2, ``elapsed_ms`` and
  ``device``; for a single point the leading N axis is absent. IEEE NaN/inf travel as they are.

Errors of the domain name fields relative to its arguments; here they are rooted where the
request carried them: ``body`` for JSON, ``query`` for the options beside an .npz body (whose
arrays are the body's ``at``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from labcrunch_service import encoding, progress
from labcrunch_service.compute import Task, Timed
from labcrunch_service.errors import located
from labcrunch_service.gradient.schemas import (
    GradientOptions,
    GradientQuery,
    GradientRequest,
    GradientResponse,
)
from labcrunch_service.http.bodies import json_or_binary
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import accepts, json_response, npz_response
from labcrunch_service.settings import Limits

if TYPE_CHECKING:
    from labcrunch_service.gradient.derivatives import Derivatives

router = APIRouter(prefix="/v1/gradient", tags=["gradient"])
#: Run once in every compute process at start-up (settings.warmup): compiles the hot path.
WARMUP = Task("labcrunch_service.gradient.derivatives:warmup")

_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": GradientRequest.model_json_schema()},
        encoding.NPZ_MEDIA_TYPE: {"schema": {
            "type": "string", "format": "binary",
            "description": "An .npz with one numeric array per variable (1-D, equal lengths, or "
                           "0-d); the options as query parameters."}},
    },
}
_RESPONSES = {
    **problem_responses(401, 413, 415, 422, 429, 500, 503),
    200: {"content": {encoding.NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
          "description": "JSON, or .npz when the request says `Accept: application/x-npz`."},
}


_ENCODE_INLINE_POINTS = 1_000  # smaller answers are encoded on the event loop (no thread hop)


GRADIENT = Task("labcrunch_service.gradient.derivatives:gradient")


def _read_columns(body: bytes, limits: Limits) -> dict[str, np.ndarray]:
    """The .npz body's columns (views of the body); inflating a compressed one stops at the
    wall-time limit like a computation."""
    with progress.tracking(progress.Tracker(time.monotonic() + limits.max_wall_seconds)):
        return encoding.read_npz(body, max_arrays=limits.max_variables,
                                 max_elements=limits.max_points,
                                 max_total_bytes=limits.max_gradient_body_bytes,
                                 total_limit="max_gradient_body_bytes")


def _json_payload(result: Derivatives) -> dict[str, Any]:
    """value, gradient as {variable: values}, hessian (rows/cols in variable order)."""
    payload: dict[str, Any] = {
        "variables": list(result.variables),
        "value": result.value,
        "gradient": {v: result.gradient[..., i] for i, v in enumerate(result.variables)},
    }
    if result.hessian is not None:
        payload["hessian"] = result.hessian
    return payload


def _answer(timed: Timed[Derivatives], options: GradientOptions, binary: bool) -> Response:
    result = timed.result
    device = timed.device(options.backend)
    if binary:
        arrays = {"variables": np.array(result.variables, dtype=str), "value": result.value,
                  "gradient": result.gradient, "elapsed_ms": np.float64(timed.elapsed_ms),
                  "device": np.array(device)}
        if result.hessian is not None:
            arrays["hessian"] = result.hessian
        return npz_response(arrays, headers={"X-Elapsed-Ms": f"{timed.elapsed_ms:.3f}",
                                             "X-Device": device})
    return json_response(_json_payload(result) | {
        "backend": options.backend, "dtype": options.dtype, "device": device,
        "elapsed_ms": timed.elapsed_ms})


@router.post(
    "",
    summary="Value, gradient and Hessian of an expression or program",
    description=(
        "Send an `expression` (or a `program` and its `function`) and the point(s) `at` which to "
        "differentiate. JSON body, or an .npz of columns (`Content-Type: application/x-npz`, "
        "options as query parameters); the answer is JSON, or .npz with `Accept: "
        "application/x-npz`. Expressions are compiled once per (text, backend, order, dtype, "
        "batch-size bucket) and cached; programs run point by point."),
    response_model=GradientResponse,
    responses=_RESPONSES,
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def gradient_route(
    request: Request,
    query: Annotated[GradientQuery, Query()],  # type: ignore[valid-type]
    runner: RunnerDep,
    limits: LimitsDep,
) -> Response:
    content = await json_or_binary(request, GradientRequest, encoding.NPZ_MEDIA_TYPE)
    if isinstance(content, bytes):
        options = GradientOptions.model_validate(query.model_dump())
        at = await run_in_threadpool(_read_columns, content, limits)
        with located("query", {"at": "body"}):
            timed = await runner.run(GRADIENT, **options.model_dump(), at=at, limits=limits)
    else:
        options = content
        with located("body"):
            timed = await runner.run(GRADIENT, **content.model_dump(), limits=limits)
    binary = accepts(request, encoding.NPZ_MEDIA_TYPE)
    if timed.result.value.size <= _ENCODE_INLINE_POINTS:
        return _answer(timed, options, binary)
    # Encoding a large batch takes tens of milliseconds or more: off the event loop.
    return await run_in_threadpool(_answer, timed, options, binary)

