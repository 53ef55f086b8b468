"""What the fractal endpoints compute, free of HTTP: one entry function per operation.

- :func:`render_png`: a view of the Mandelbrot or Julia set as a PNG;
- :func:`render_counts`: the same view's escape counts (and smooth counts, for JSON answers);
- :func:`render_tile`: one 256×256 XYZ map tile as a PNG.

Each takes the request's fields as keyword arguments and checks everything before any work
starts (:mod:`checks`, which the router also runs before queueing): 422 (InvalidInput) for bad
values, 413 (LimitExceeded) over a limit, 404 for a tile outside the world.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labcrunch_service.fractal import color
from labcrunch_service.fractal.checks import Counts, Fractal, check_colormap, tile, view
from labcrunch_service.fractal.escape import Escape, compile_kernels, escape_counts
from labcrunch_service.settings import Limits, Settings


def _counts(f: Fractal) -> Escape:
    x, y = f.plane.pixel_centers(f.dtype)
    return escape_counts(f.kind, x, y, max_iter=f.max_iter, escape_radius=f.escape_radius,
                         c=f.c, dtype=f.dtype)


def _png(f: Fractal, colormap: str, smooth: bool) -> bytes:
    check_colormap(colormap)
    return color.png(color.colorize(_counts(f), colormap, smooth))


def render_png(kind: str, *, colormap: str = color.DEFAULT_COLORMAP, smooth: bool = True,
               limits: Limits, **fields: Any) -> bytes:
    """The view (``width``, ``height``, ``max_iter``, box or center fields, ``c_re``/``c_im``,
    ``escape_radius``, ``precision``) as a PNG."""
    return _png(view(kind, limits=limits, **fields), colormap, smooth)


def render_counts(kind: str, *, as_json: bool, smooth: bool = True, limits: Limits,
                  **fields: Any) -> Counts:
    """The view's counts; for a JSON answer (``as_json``) at most limits.max_json_pixels, with
    the smooth counts when ``smooth``."""
    fractal = view(kind, limits=limits, as_json=as_json, **fields)
    escape = _counts(fractal)
    return Counts(fractal, escape.counts,
                  color.smooth_counts(escape) if as_json and smooth else None)


def render_tile(z: int, x: int, y: int, *, kind: str = "mandelbrot", max_iter: int | None = None,
                c_re: float | None = None, c_im: float | None = None,
                colormap: str = color.DEFAULT_COLORMAP, smooth: bool = True, limits: Limits) -> bytes:
    """XYZ tile (z, x, y) over the world box as a PNG; ``max_iter`` and the precision grow with
    the zoom unless given."""
    fractal = tile(z, x, y, kind=kind, max_iter=max_iter, c_re=c_re, c_im=c_im, limits=limits)
    return _png(fractal, colormap, smooth)


def warmup(settings: Settings) -> None:
    """Compile the float32 kernels of every bucket, then render the default view once."""
    from labcrunch_service.fractal.schemas import FractalParams

    compile_kernels(np.float32)
    render_png("mandelbrot", limits=settings.limits, **FractalParams().model_dump())
