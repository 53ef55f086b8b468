"""Every check of a fractal request, before any work: cheap (numpy on the view's edges, no JAX),
so the router runs them in the HTTP process before the job is queued, and the entry functions
of :mod:`render` run them again where they compute.

422 (InvalidInput) for bad values, 413 (LimitExceeded) over a limit, 404 for a tile outside the
world. Also the plain data the entry functions take and give back (:class:`Fractal`,
:class:`Counts`): the HTTP process unpickles it, so it lives here, away from JAX.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.fractal import color
from labcrunch_service.fractal.plane import (
    MAX_ESCAPE_RADIUS,
    MIN_ESCAPE_RADIUS,
    SEED_JULIA_C,
    Plane,
    check_limits,
    check_resolution,
    make_plane,
    tile_max_iter,
    tile_plane,
    tile_precision,
)
from labcrunch_service.settings import Limits

KINDS = ("mandelbrot", "julia")
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class Fractal:
    """One fully checked fractal request."""

    kind: str
    plane: Plane
    max_iter: int
    c: complex  # the Julia constant; 0 for Mandelbrot
    escape_radius: float
    precision: str

    @property
    def dtype(self):
        return DTYPES[self.precision]


@dataclass(frozen=True)
class Counts:
    """The escape counts of one view (int32, row 0 at the top); ``smooth`` when asked for (JSON
    answers only)."""

    fractal: Fractal
    counts: np.ndarray
    smooth: np.ndarray | None


def _invalid(field: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{field}: {msg}", errors=[{"loc": [field], "msg": msg, "type": "value_error"}])


def prepare(
    kind: str,
    plane: Plane,
    *,
    max_iter: int,
    limits: Limits,
    c: complex | None = None,
    escape_radius: float = 2.0,
    precision: str = "float32",
) -> Fractal:
    """Check everything before any work: 422 for bad values, 413 over a limit."""
    if kind not in KINDS:
        raise _invalid("kind", f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if precision not in DTYPES:
        raise _invalid("precision", f"unknown precision {precision!r}; one of {', '.join(DTYPES)}")
    if max_iter < 1:
        raise _invalid("max_iter", "must be at least 1")
    if not MIN_ESCAPE_RADIUS <= escape_radius <= MAX_ESCAPE_RADIUS:
        raise _invalid("escape_radius",
                       f"must be between {MIN_ESCAPE_RADIUS:g} and {MAX_ESCAPE_RADIUS:g}")
    if kind == "mandelbrot" and c is not None:
        raise _invalid("c_re", "c is the Julia constant; the Mandelbrot set takes c from the pixel")
    if kind == "julia" and c is not None and abs(c) > escape_radius:
        # Past R ≥ max(2, |c|) an orbit only grows, so escaping is final; below |c| it is not.
        raise _invalid("escape_radius", f"must be at least |c| = {abs(c):g} for this Julia set "
                       "(an orbit past a smaller radius can come back)")
    check_limits(plane.width, plane.height, max_iter, limits)
    check_resolution(plane, DTYPES[precision], precision)
    return Fractal(kind, plane, max_iter, SEED_JULIA_C if c is None and kind == "julia" else (c or 0j),
                   float(escape_radius), precision)


def check_colormap(colormap: str) -> None:
    if colormap not in color.COLORMAPS:
        raise _invalid("colormap", f"unknown colormap {colormap!r}; one of {', '.join(color.COLORMAPS)}")


def julia_constant(c_re: float | None, c_im: float | None) -> complex | None:
    return None if c_re is None and c_im is None else complex(c_re or 0.0, c_im or 0.0)


def view(kind: str, *, width: int, height: int, max_iter: int, limits: Limits,
         x_min: float | None = None, x_max: float | None = None, y_min: float | None = None,
         y_max: float | None = None, center_x: float | None = None, center_y: float | None = None,
         scale: float | None = None, c_re: float | None = None, c_im: float | None = None,
         escape_radius: float = 2.0, precision: str = "float32", as_json: bool = False) -> Fractal:
    """The checked request for a view given as a box, as a center and scale, or not at all;
    ``as_json``: at most limits.max_json_pixels."""
    plane = make_plane(width, height, x_min=x_min, x_max=x_max, y_min=y_min, y_max=y_max,
                       center_x=center_x, center_y=center_y, scale=scale)
    fractal = prepare(kind, plane, max_iter=max_iter, limits=limits, c=julia_constant(c_re, c_im),
                      escape_radius=escape_radius, precision=precision)
    pixels = plane.width * plane.height
    if as_json and pixels > limits.max_json_pixels:
        raise LimitExceeded(
            f"{pixels} pixels is over max_json_pixels = {limits.max_json_pixels} for format "
            "json; ask for format npy.", limit="max_json_pixels",
            maximum=limits.max_json_pixels, value=pixels)
    return fractal


def tile(z: int, x: int, y: int, *, kind: str = "mandelbrot", max_iter: int | None = None,
         c_re: float | None = None, c_im: float | None = None, limits: Limits) -> Fractal:
    """The checked request of XYZ tile (z, x, y); ``max_iter`` and the precision grow with the
    zoom unless given."""
    return prepare(kind, tile_plane(z, x, y, limits), max_iter=max_iter or tile_max_iter(z),
                   limits=limits, c=julia_constant(c_re, c_im), precision=tile_precision(z))
