"""HTTP routes for /v1/fractal: validate, call the domain function through the runner, encode.

- ``GET /v1/fractal/{kind}.png``: a PNG for curl and ``<img src=...>`` (query parameters).
- ``POST /v1/fractal``: the same parameters as JSON plus ``format`` (png, npy, json).
- ``GET /v1/fractal/tiles/{z}/{x}/{y}.png``: 256×256 XYZ map tiles over a fixed world box.

Image answers carry ``X-Elapsed-Ms`` and ``X-Device`` headers (JSON answers the same as fields).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from labcrunch_service import backends, encoding
from labcrunch_service.compute import Timed
from labcrunch_service.errors import LimitExceeded
from labcrunch_service.fractal import colour, escape, plane, render
from labcrunch_service.http.deps import LimitsDep, RunnerDep
from labcrunch_service.http.problems import problem_responses
from labcrunch_service.settings import Limits, Settings

router = APIRouter(prefix="/v1/fractal", tags=["fractal"])

Kind = Literal["mandelbrot", "julia"]
Colormap = Literal[colour.COLORMAPS]  # type: ignore[valid-type]
Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-plane.MAX_COORDINATE,
                                     le=plane.MAX_COORDINATE)]
PNG_MEDIA_TYPE = "image/png"


class Colouring(BaseModel):
    colormap: Colormap = Field(colour.DEFAULT_COLORMAP, description="Colour table; `seed` is the "
                               "seed notebook's log-normalised shading.")
    smooth: bool = Field(True, description="Continuous counts n + 1 − log₂(ln|z_n| / ln R).")


class FractalParams(Colouring):
    """A view of the Mandelbrot or Julia set (query parameters or JSON fields)."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(512, ge=1, description="Pixels across.")
    height: int = Field(512, ge=1, description="Pixels down.")
    max_iter: int = Field(1000, ge=1, description="Iterations at most; the count of a pixel "
                          "that does not escape.")
    x_min: Coordinate | None = Field(None, description="Left edge (box form; all four or none).")
    x_max: Coordinate | None = None
    y_min: Coordinate | None = None
    y_max: Coordinate | None = None
    center_x: Coordinate | None = Field(None, description="Centre (centre form, with scale).")
    center_y: Coordinate | None = None
    scale: Coordinate | None = Field(None, gt=0, description="Width of the view in the plane; "
                                     "pixels are square.")
    c_re: Coordinate | None = Field(None, description="Julia constant, real part (default the "
                                    "seed's -0.7269).")
    c_im: Coordinate | None = Field(None, description="Julia constant, imaginary part (default "
                                    "0.1889).")
    precision: Literal["float32", "float64"] = "float32"
    escape_radius: float = Field(2.0, ge=render.MIN_ESCAPE_RADIUS, le=render.MAX_ESCAPE_RADIUS,
                                 allow_inf_nan=False, description="R: a pixel escapes at the "
                                 "first n with |z_n| > R.")


class FractalRequest(FractalParams):
    kind: Kind = "mandelbrot"
    format: Literal["png", "npy", "json"] = Field("png", description="png: an image; npy: the "
                                                  "counts as int32 .npy; json: counts (and "
                                                  "smooth counts) as lists.")


class FractalCounts(BaseModel):
    """The JSON answer of POST /v1/fractal with format=json."""

    kind: Kind
    width: int
    height: int
    max_iter: int
    escape_radius: float
    precision: str
    box: dict[str, float] = Field(description="x_min, x_max, y_min, y_max; pixel centres are "
                                  "sampled, row 0 is y_max.")
    c: list[float] | None = Field(description="[re, im] of the Julia constant.")
    counts: list[list[int]]
    smooth: list[list[float]] | None = Field(None, description="Smooth counts, when asked for.")
    elapsed_ms: float
    device: str


def _fractal(kind: str, p: FractalParams, limits: Limits) -> render.Fractal:
    view = plane.make_plane(p.width, p.height, x_min=p.x_min, x_max=p.x_max, y_min=p.y_min,
                            y_max=p.y_max, center_x=p.center_x, center_y=p.center_y, scale=p.scale)
    c = None if p.c_re is None and p.c_im is None else complex(p.c_re or 0.0, p.c_im or 0.0)
    return render.prepare(kind, view, max_iter=p.max_iter, limits=limits, c=c,
                          escape_radius=p.escape_radius, precision=p.precision)


def _image(done: Timed[bytes], media_type: str, **headers: str) -> Response:
    return Response(done.result, media_type=media_type, headers={
        "X-Elapsed-Ms": f"{done.elapsed_ms:.3f}", "X-Device": backends.device_for("jax"), **headers})


_ERRORS = problem_responses(401, 413, 422, 429, 503)
_PNG = {200: {"content": {PNG_MEDIA_TYPE: {}}, "description": "A PNG image."}}


@router.get("/{kind}.png", summary="Render the Mandelbrot or Julia set as a PNG",
            response_class=Response, responses={**_PNG, **_ERRORS})
async def fractal_png(kind: Annotated[Kind, Path()], params: Annotated[FractalParams, Query()],
                      runner: RunnerDep, limits: LimitsDep) -> Response:
    fractal = _fractal(kind, params, limits)
    done = await runner.run(render.png, fractal, params.colormap, params.smooth)
    return _image(done, PNG_MEDIA_TYPE)


@router.post("", summary="Render a fractal as PNG, raw counts (.npy) or JSON",
             response_model=FractalCounts,
             responses={200: {"content": {PNG_MEDIA_TYPE: {}, encoding.NPY_MEDIA_TYPE: {}}}, **_ERRORS})
async def fractal_post(body: FractalRequest, runner: RunnerDep, limits: LimitsDep) -> Any:
    fractal = _fractal(body.kind, body, limits)
    if body.format == "png":
        return _image(await runner.run(render.png, fractal, body.colormap, body.smooth),
                      PNG_MEDIA_TYPE)
    if body.format == "json" and body.width * body.height > limits.max_json_pixels:
        pixels = body.width * body.height
        raise LimitExceeded(
            f"{pixels} pixels is over max_json_pixels = {limits.max_json_pixels} for format "
            "json; ask for format npy.", limit="max_json_pixels",
            maximum=limits.max_json_pixels, value=pixels)
    done = await runner.run(render.counts, fractal)
    result = done.result
    if body.format == "npy":
        return _image(Timed(encoding.to_npy(result.counts), done.elapsed_ms),
                      encoding.NPY_MEDIA_TYPE)
    payload = {
        "kind": fractal.kind, "width": fractal.plane.width, "height": fractal.plane.height,
        "max_iter": fractal.max_iter, "escape_radius": fractal.escape_radius,
        "precision": fractal.precision, "box": fractal.plane.box(),
        "c": [fractal.c.real, fractal.c.imag] if fractal.kind == "julia" else None,
        "counts": result.counts,
        "smooth": colour.smooth_counts(result) if body.smooth else None,
        "elapsed_ms": done.elapsed_ms, "device": backends.device_for("jax"),
    }
    return Response(encoding.dumps(encoding.jsonable(payload)), media_type="application/json")


class TileParams(Colouring):
    model_config = ConfigDict(extra="forbid")

    kind: Kind = "mandelbrot"
    max_iter: int | None = Field(None, ge=1, description="Default grows with zoom: 256 + 128 z.")
    c_re: Coordinate | None = None
    c_im: Coordinate | None = None


@router.get("/tiles/{z}/{x}/{y}.png", summary="A 256×256 map tile (XYZ scheme)",
            description=f"World box x, y in {list(plane.TILE_WORLD)}; tile (0, 0, 0) covers it, "
            "row y = 0 is the top. float64 is used once float32 cannot resolve the pixels.",
            response_class=Response,
            responses={**_PNG, **_ERRORS, **problem_responses(404)})
async def fractal_tile(z: int, x: int, y: int, params: Annotated[TileParams, Query()],
                       runner: RunnerDep, limits: LimitsDep) -> Response:
    view = plane.tile_plane(z, x, y, limits)
    c = None if params.c_re is None and params.c_im is None else complex(params.c_re or 0.0,
                                                                         params.c_im or 0.0)
    fractal = render.prepare(params.kind, view, max_iter=params.max_iter or plane.tile_max_iter(z),
                             limits=limits, c=c, precision=plane.tile_precision(z))
    done = await runner.run(render.png, fractal, params.colormap, params.smooth)
    # A tile never changes for the same URL: let browsers and proxies keep it.
    return _image(done, PNG_MEDIA_TYPE, **{"Cache-Control": "public, max-age=86400"})


def warmup(settings: Settings) -> None:
    """Compile the float32 kernels of every bucket, then render the default view once."""
    escape.compile_kernels(np.float32)
    render.png(_fractal("mandelbrot", FractalParams(), settings.limits))
