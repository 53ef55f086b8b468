"""HTTP routes for /v1/gradient: validate, call the domain function through the runner, encode.

One route, two body formats both ways:

* JSON in (``{"expression": ..., "at": {...}}``), JSON out: non-finite numbers as the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (see ``labcrunch_service.encoding``).
* ``Content-Type: application/x-npz`` in: one 1-D (or 0-d) array per variable, named by the
  variable, with the options (``expression`` or ``program`` + ``function``, ``order``,
  ``backend``, ``dtype``) as query parameters -- the practical way to send 10^6 points.
* ``Accept: application/x-npz`` out (for either body): arrays ``variables`` (strings),
  ``value`` (N,), ``gradient`` (N, n), ``hessian`` (N, n, n) for order 2, ``elapsed_ms`` and
  ``device``; for a single point the leading N axis is absent. IEEE NaN/inf travel as they are.
"""

from __future__ import annotations

import io
import zipfile
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from labcrunch_service import backends, encoding
from labcrunch_service.compute import Timed
from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.gradient import derivatives
from labcrunch_service.http.bodies import json_or_binary
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.settings import Limits, Settings

router = APIRouter(prefix="/v1/gradient", tags=["gradient"])

NonFinite = Literal["NaN", "Infinity", "-Infinity"]
Number = float | NonFinite  # how labcrunch writes non-finite numbers in JSON


class GradientOptions(BaseModel):
    """What to differentiate and how; with an .npz body these are query parameters."""

    model_config = ConfigDict(extra="forbid")
    expression: str | None = Field(None, description="An expression, e.g. `sin(x) * y**2` "
                                   "(limits.max_text_length, max_ast_nodes, max_nesting_depth).",
                                   examples=["(x - 1)**2"])
    program: str | None = Field(None, description="Python-like source with one or more `def`; "
                                "differentiates `function`. Runs point by point.")
    function: str | None = Field(None, description="The def in `program` to differentiate; its "
                                 "parameters are the variables, in order.")
    order: int = Field(1, ge=1, le=2, description="1: value and gradient; 2: also the Hessian.")
    backend: Literal["jax", "tensorflow"] = Field("jax", description="jax (jit/vmap/grad) or "
                                                  "tensorflow (GradientTape).")
    dtype: Literal["float32", "float64"] = Field("float64", description="Precision of the computation.")


class GradientRequest(GradientOptions):
    """A JSON gradient request: exactly one of `expression` or `program` + `function`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"expression": "(x - 1)**2", "at": {"x": 3.0}},
        {"expression": "sin(x) * y**2", "at": {"x": [0.1, 0.2], "y": [1.0, 2.0]}, "order": 2,
         "backend": "tensorflow"},
        {"program": "def f(x):\n    if x > 0:\n        for i in range(2):\n            x += "
                    "jax.numpy.sqrt(x)\n        return x / 10.\n    else:\n        return "
                    "f(f(x ** 2)) + 1\n", "function": "f", "at": {"x": 3.4}},
    ]})
    at: dict[str, float | list[float]] = Field(
        default_factory=dict, description="A value for each free variable: a number, or a list "
        "(equal-length lists are a batch of points; numbers broadcast over the batch). "
        "Non-finite inputs may be written \"NaN\", \"Infinity\", \"-Infinity\".")


class GradientResponse(BaseModel):
    variables: list[str] = Field(description="The free variables: sorted by name for an "
                                 "expression, the function's parameters for a program.")
    value: Number | list[Number]
    gradient: dict[str, Number | list[Number]] = Field(description="∂value/∂variable.")
    hessian: list[list[Number]] | list[list[list[Number]]] | None = Field(
        None, description="Order 2: rows and columns in `variables` order; a list of matrices "
        "for a batch.")
    backend: str
    dtype: str
    device: str
    elapsed_ms: float


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


def read_npz_columns(data: bytes, limits: Limits) -> dict[str, np.ndarray]:
    """The variables' arrays from an .npz body, each checked by ``encoding.read_npy`` (numeric,
    no pickles, size limit) before it is loaded."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"The body is not a valid .npz archive: {exc}.",
                           errors=[{"loc": ["body"], "msg": str(exc), "type": "npz"}]) from None
    if len(members) > limits.max_variables:
        raise LimitExceeded(f"The .npz holds {len(members)} arrays; at most {limits.max_variables} "
                            "variables are accepted (limits.max_variables).",
                            limit="max_variables", maximum=limits.max_variables, value=len(members))
    columns = {}
    for member in members:
        name = member.filename.removesuffix(".npy")
        if member.file_size > 8 * limits.max_points + 4096:  # declared size, before inflating
            raise LimitExceeded(
                f"The .npz member {name!r} is {member.file_size} bytes; at most "
                f"{limits.max_points} points are accepted (limits.max_points).",
                limit="max_points", maximum=limits.max_points)
        columns[name] = encoding.read_npy(archive.read(member), max_elements=limits.max_points,
                                          where=name)
    return columns


def _gradient_from_npz(body: bytes, options: GradientOptions, limits: Limits) -> derivatives.Derivatives:
    at = read_npz_columns(body, limits)
    return derivatives.gradient(**options.model_dump(), at=at, limits=limits)


def _answer(timed: Timed[derivatives.Derivatives], options: GradientOptions, accept: str) -> Response:
    result = timed.result
    device = backends.device_for(options.backend)
    if encoding.NPZ_MEDIA_TYPE in accept:
        arrays = {"variables": np.array(result.variables, dtype=str), "value": result.value,
                  "gradient": result.gradient, "elapsed_ms": np.float64(timed.elapsed_ms),
                  "device": np.array(device)}
        if result.hessian is not None:
            arrays["hessian"] = result.hessian
        return Response(encoding.to_npz(arrays), media_type=encoding.NPZ_MEDIA_TYPE,
                        headers={"X-Elapsed-Ms": f"{timed.elapsed_ms:.3f}", "X-Device": device})
    payload = derivatives.as_columns(result) | {
        "backend": options.backend, "dtype": options.dtype, "device": device,
        "elapsed_ms": timed.elapsed_ms}
    return Response(encoding.dumps(encoding.jsonable(payload)), media_type="application/json")


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
    query: Annotated[GradientOptions, Query()],
    runner: RunnerDep,
    limits: LimitsDep,
) -> Response:
    content = await json_or_binary(request, GradientRequest, encoding.NPZ_MEDIA_TYPE)
    if isinstance(content, bytes):
        options: GradientOptions = query
        timed = await runner.run(_gradient_from_npz, content, options, limits)
    else:
        options = content
        timed = await runner.run(derivatives.gradient, **options.model_dump(), limits=limits)
    accept = request.headers.get("accept", "")
    if timed.result.value.size <= _ENCODE_INLINE_POINTS:
        return _answer(timed, options, accept)
    # Encoding a large batch takes tens of milliseconds or more: off the event loop.
    return await run_in_threadpool(_answer, timed, options, accept)


def warmup(settings: Settings) -> None:
    """Compile the seed's first case, a scalar gradient, so the first request is quick."""
    warm = [b for b in ("jax", "tensorflow") if b == "jax" or (
        settings.load_tensorflow and backends.tensorflow_available())]
    for backend in warm:
        derivatives.gradient(expression="(x - 1)**2", at={"x": 3.0}, backend=backend,
                             limits=settings.limits)
