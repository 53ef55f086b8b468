"""What the fractal endpoints compute, free of HTTP: one entry function per operation.

- :func:`render_png`: a view of the Mandelbrot or Julia set as a PNG;
- :func:`render_counts`: the same view's escape counts (and smooth counts, for JSON answers);
- :func:`render_tile`: one 256×256 XYZ map tile as a PNG.

Each takes the request's fields as keyword arguments and checks everything before any work
starts: 422 (InvalidInput) for bad values, 413 (LimitExceeded) over a limit, 404 for a tile
outside the world.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.fractal import color
from labcrunch_service.fractal.escape import DTYPES, KINDS, Escape, compile_kernels, escape_counts
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
from labcrunch_service.settings import Limits, Settings


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


def _julia_constant(c_re: float | None, c_im: float | None) -> complex | None:
    return None if c_re is None and c_im is None else complex(c_re or 0.0, c_im or 0.0)


def _view(kind: str, *, width: int, height: int, max_iter: int, limits: Limits,
          x_min: float | None = None, x_max: float | None = None, y_min: float | None = None,
          y_max: float | None = None, center_x: float | None = None, center_y: float | None = None,
          scale: float | None = None, c_re: float | None = None, c_im: float | None = None,
          escape_radius: float = 2.0, precision: str = "float32") -> Fractal:
    """The checked request for a view given as a box, as a center and scale, or not at all."""
    plane = make_plane(width, height, x_min=x_min, x_max=x_max, y_min=y_min, y_max=y_max,
                       center_x=center_x, center_y=center_y, scale=scale)
    return prepare(kind, plane, max_iter=max_iter, limits=limits, c=_julia_constant(c_re, c_im),
                   escape_radius=escape_radius, precision=precision)


def _counts(f: Fractal) -> Escape:
    x, y = f.plane.pixel_centers(f.dtype)
    return escape_counts(f.kind, x, y, max_iter=f.max_iter, escape_radius=f.escape_radius,
                         c=f.c, dtype=f.dtype)


def _png(f: Fractal, colormap: str, smooth: bool) -> bytes:
    if colormap not in color.COLORMAPS:
        raise _invalid("colormap", f"unknown colormap {colormap!r}; one of {', '.join(color.COLORMAPS)}")
    return color.png(color.colorize(_counts(f), colormap, smooth))


def render_png(kind: str, *, colormap: str = color.DEFAULT_COLORMAP, smooth: bool = True,
               limits: Limits, **view: Any) -> bytes:
    """The view (``width``, ``height``, ``max_iter``, box or center fields, ``c_re``/``c_im``,
    ``escape_radius``, ``precision``) as a PNG."""
    return _png(_view(kind, limits=limits, **view), colormap, smooth)


@dataclass(frozen=True)
class Counts:
    """The escape counts of one view; ``smooth`` when asked for (JSON answers only)."""

    fractal: Fractal
    escape: Escape
    smooth: np.ndarray | None


def render_counts(kind: str, *, as_json: bool, smooth: bool = True, limits: Limits,
                  **view: Any) -> Counts:
    """The view's counts; for a JSON answer (``as_json``) at most limits.max_json_pixels, with
    the smooth counts when ``smooth``."""
    fractal = _view(kind, limits=limits, **view)
    pixels = fractal.plane.width * fractal.plane.height
    if as_json and pixels > limits.max_json_pixels:
        raise LimitExceeded(
            f"{pixels} pixels is over max_json_pixels = {limits.max_json_pixels} for format "
            "json; ask for format npy.", limit="max_json_pixels",
            maximum=limits.max_json_pixels, value=pixels)
    escape = _counts(fractal)
    return Counts(fractal, escape, color.smooth_counts(escape) if as_json and smooth else None)


def render_tile(z: int, x: int, y: int, *, kind: str = "mandelbrot", max_iter: int | None = None,
                c_re: float | None = None, c_im: float | None = None,
                colormap: str = color.DEFAULT_COLORMAP, smooth: bool = True, limits: Limits) -> bytes:
    """XYZ tile (z, x, y) over the world box as a PNG; ``max_iter`` and the precision grow with
    the zoom unless given."""
    fractal = prepare(kind, tile_plane(z, x, y, limits), max_iter=max_iter or tile_max_iter(z),
                      limits=limits, c=_julia_constant(c_re, c_im), precision=tile_precision(z))
    return _png(fractal, colormap, smooth)


def warmup(settings: Settings) -> None:
    """Compile the float32 kernels of every bucket, then render the default view once."""
    from labcrunch_service.fractal.schemas import FractalParams

    compile_kernels(np.float32)
    render_png("mandelbrot", limits=settings.limits, **FractalParams().model_dump())
