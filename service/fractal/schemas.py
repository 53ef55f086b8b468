"""Request and response models of /v1/fractal (pydantic; the OpenAPI document is made from them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from labcrunch_service.fractal import color, plane
from labcrunch_service.schemas import Boolean, FiniteFloat, Integer, QueryParameters, integer

Kind = Literal["mandelbrot", "julia"]
Colormap = Literal[color.COLORMAPS]  # type: ignore[valid-type]
Coordinate = Annotated[FiniteFloat, Field(ge=-plane.MAX_COORDINATE, le=plane.MAX_COORDINATE)]


class Coloring(BaseModel):
    colormap: Colormap = Field(color.DEFAULT_COLORMAP, description="Color table; `seed` is the "
                               "seed notebook's log-normalized shading.")
    smooth: Boolean = Field(True, description="Continuous counts n + 1 − log₂(ln|z_n| / ln R).")


class FractalParams(Coloring):
    """A view of the Mandelbrot or Julia set (query parameters or JSON fields)."""

    model_config = ConfigDict(extra="forbid")

    width: Integer = Field(512, ge=1, description="Pixels across.")
    height: Integer = Field(512, ge=1, description="Pixels down.")
    max_iter: Integer = Field(1000, ge=1, description="Iterations at most; the count of a pixel "
                          "that does not escape.")
    x_min: Coordinate | None = Field(None, description="Left edge (box form; all four or none).")
    x_max: Coordinate | None = None
    y_min: Coordinate | None = None
    y_max: Coordinate | None = None
    center_x: Coordinate | None = Field(None, description="Center (center form, with scale).")
    center_y: Coordinate | None = None
    scale: Coordinate | None = Field(None, gt=0, description="Width of the view in the plane; "
                                     "pixels are square.")
    c_re: Coordinate | None = Field(None, description="Julia constant, real part (default the "
                                    "seed's -0.7269).")
    c_im: Coordinate | None = Field(None, description="Julia constant, imaginary part (default "
                                    "0.1889).")
    precision: Literal["float32", "float64"] = "float32"
    escape_radius: FiniteFloat = Field(2.0, ge=plane.MIN_ESCAPE_RADIUS,
                                       le=plane.MAX_ESCAPE_RADIUS, description="R: a pixel escapes at the "
                                 "first n with |z_n| > R.")


class FractalQuery(FractalParams, QueryParameters):
    """The view as the query parameters of GET /v1/fractal/{kind}.png."""


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
    box: dict[str, float] = Field(description="x_min, x_max, y_min, y_max; pixel centers are "
                                  "sampled, row 0 is y_max.")
    c: list[float] | None = Field(description="[re, im] of the Julia constant.")
    counts: list[list[int]]
    smooth: list[list[float]] | None = Field(None, description="Smooth counts, when asked for.")
    elapsed_ms: float
    device: str


class TileParams(Coloring, QueryParameters):
    model_config = ConfigDict(extra="forbid")

    kind: Kind = "mandelbrot"
    max_iter: integer(ge=1) | None = Field(None, description="Default grows with zoom: 256 + 128 z.")
    c_re: Coordinate | None = None
    c_im: Coordinate | None = None
