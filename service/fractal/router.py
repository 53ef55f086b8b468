"""HTTP routes for /v1/fractal: validate, call the domain function through the runner, encode.

- ``GET /v1/fractal/{kind}.png``: a PNG for curl and ``<img src=...>`` (query parameters).
- ``POST /v1/fractal``: the same parameters as JSON plus ``format`` (png, npy, json).
- ``GET /v1/fractal/tiles/{z}/{x}/{y}.png``: 256×256 XYZ map tiles over a fixed world box.

Image answers carry ``X-Elapsed-Ms`` and ``X-Device`` headers (JSON answers the same as fields).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from labcrunch_service import encoding
from labcrunch_service.compute import Task, Timed
from labcrunch_service.errors import located
from labcrunch_service.fractal import plane
from labcrunch_service.fractal.schemas import (
    FractalCounts,
    FractalQuery,
    FractalRequest,
    Kind,
    TileParams,
)
from labcrunch_service.http.bodies import JsonBodyRoute
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.http.responses import json_response, npy_response

router = APIRouter(prefix="/v1/fractal", tags=["fractal"], route_class=JsonBodyRoute)
#: Run once in every compute process at start-up (settings.warmup): compiles the hot path.
WARMUP = Task("labcrunch_service.fractal.render:warmup")

PNG_MEDIA_TYPE = "image/png"
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ERRORS = problem_responses(401, 413, 422, 429, 503)
_PNG = {200: {"content": {PNG_MEDIA_TYPE: _BINARY}, "description": "A PNG image."}}


RENDER_PNG = Task("labcrunch_service.fractal.render:render_png")
RENDER_COUNTS = Task("labcrunch_service.fractal.render:render_counts")
RENDER_TILE = Task("labcrunch_service.fractal.render:render_tile")


def _timing(done: Timed[object]) -> dict[str, str]:
    return {"X-Elapsed-Ms": f"{done.elapsed_ms:.3f}", "X-Device": done.device("jax")}


def _png(done: Timed[bytes], **headers: str) -> Response:
    return Response(done.result, media_type=PNG_MEDIA_TYPE, headers=_timing(done) | headers)


@router.get("/{kind}.png", summary="Render the Mandelbrot or Julia set as a PNG",
            response_class=Response, response_model=None, responses={**_PNG, **_ERRORS})
async def fractal_png(kind: Annotated[Kind, Path()], params: Annotated[FractalQuery, Query()],
                      runner: RunnerDep, limits: LimitsDep) -> Response:
    with located("query"):
        return _png(await runner.run(RENDER_PNG, kind, limits=limits, **params.model_dump()))


@router.post("", summary="Render a fractal as PNG, raw counts (.npy) or JSON",
             response_model=FractalCounts,
             responses={200: {"content": {PNG_MEDIA_TYPE: _BINARY, encoding.NPY_MEDIA_TYPE: _BINARY},
                              "description": "format json: the counts as JSON; png: a PNG image; "
                                             "npy: the counts as an int32 .npy array."},
                        **_ERRORS})
async def fractal_post(body: FractalRequest, runner: RunnerDep, limits: LimitsDep) -> Response:
    view = body.model_dump(exclude={"kind", "format", "colormap", "smooth"})
    with located("body"):
        if body.format == "png":
            return _png(await runner.run(RENDER_PNG, body.kind, colormap=body.colormap,
                                         smooth=body.smooth, limits=limits, **view))
        done = await runner.run(RENDER_COUNTS, body.kind, as_json=body.format == "json",
                                smooth=body.smooth, limits=limits, **view)
    fractal, result = done.result.fractal, done.result.escape
    if body.format == "npy":
        return npy_response(result.counts, headers=_timing(done))
    return json_response({
        "kind": fractal.kind, "width": fractal.plane.width, "height": fractal.plane.height,
        "max_iter": fractal.max_iter, "escape_radius": fractal.escape_radius,
        "precision": fractal.precision, "box": fractal.plane.box(),
        "c": [fractal.c.real, fractal.c.imag] if fractal.kind == "julia" else None,
        "counts": result.counts, "smooth": done.result.smooth,
        "elapsed_ms": done.elapsed_ms, "device": done.device("jax"),
    })


@router.get("/tiles/{z}/{x}/{y}.png", summary="A 256×256 map tile (XYZ scheme)",
            description=f"World box x, y in {list(plane.TILE_WORLD)}; tile (0, 0, 0) covers it, "
            "row y = 0 is the top. float64 is used once float32 cannot resolve the pixels.",
            response_class=Response, response_model=None,
            responses={**_PNG, **_ERRORS, **problem_responses(404)})
async def fractal_tile(z: int, x: int, y: int, params: Annotated[TileParams, Query()],
                       runner: RunnerDep, limits: LimitsDep) -> Response:
    with located("query"):
        done = await runner.run(RENDER_TILE, z, x, y, limits=limits, **params.model_dump())
    # A tile never changes for the same URL: let browsers and proxies keep it.
    return _png(done, **{"Cache-Control": "public, max-age=86400"})

