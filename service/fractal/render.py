"""What the fractal endpoints compute, free of HTTP: a checked request → counts or a PNG."""

from __future__ import annotations

from dataclasses import dataclass

from labcrunch_service.errors import InvalidInput
from labcrunch_service.fractal import colour
from labcrunch_service.fractal.escape import DTYPES, KINDS, Escape, escape_counts
from labcrunch_service.fractal.plane import SEED_JULIA_C, Plane, check_limits, check_resolution
from labcrunch_service.settings import Limits

MIN_ESCAPE_RADIUS = 2.0  # below 2 (or |c|) an orbit may come back: escaping would not be final
MAX_ESCAPE_RADIUS = 1e6  # keeps |z|² of an escaped float32 orbit finite


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


def counts(f: Fractal) -> Escape:
    x, y = f.plane.pixel_centres(f.dtype)
    return escape_counts(f.kind, x, y, max_iter=f.max_iter, escape_radius=f.escape_radius,
                         c=f.c, dtype=f.dtype)


def png(f: Fractal, colormap: str = colour.DEFAULT_COLORMAP, smooth: bool = True) -> bytes:
    if colormap not in colour.COLORMAPS:
        raise _invalid("colormap", f"unknown colormap {colormap!r}; one of {', '.join(colour.COLORMAPS)}")
    return colour.png(colour.colour(counts(f), colormap, smooth))

