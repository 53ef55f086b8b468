"""The view: which rectangle of the complex plane, sampled at which pixel centers.

A view is a box [x_min, x_max] × [y_min, y_max] cut into width × height pixels. Pixel
(row 0, column 0) is the top-left one, at (x_min, y_max); the point sampled is the pixel's
*center*: column j is x_min + (j + ½)·(x_max − x_min)/width, row i is
y_max − (i + ½)·(y_max − y_min)/height. Centers are computed in float64 and then rounded to
the working precision, which is the value the iteration starts from.

A view may also be given as a center and a ``scale`` (the width of the box in the plane; the
height follows from the pixel aspect, so pixels are square).

Map tiles use the usual XYZ scheme over the fixed world box ``TILE_WORLD``: tile (z, x, y) is
the x-th of 2^z columns from the left and the y-th of 2^z rows from the top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labcrunch_service.errors import InvalidInput, LimitExceeded, NotFound
from labcrunch_service.settings import Limits

MIN_ESCAPE_RADIUS = 2.0  # below 2 (or |c|) an orbit may come back: escaping would not be final
MAX_ESCAPE_RADIUS = 1e6  # keeps |z|² of an escaped float32 orbit finite

SEED_BOX = (-1.5, 1.5, -1.5, 1.5)  # the seed notebook's view of both sets
SEED_JULIA_C = complex(-0.7269, 0.1889)  # the seed notebook's Julia constant
TILE_WORLD = (-2.5, 1.5, -2.0, 2.0)
TILE_PIXELS = 256
BOX_FIELDS = ("x_min", "x_max", "y_min", "y_max")
CENTER_FIELDS = ("center_x", "center_y", "scale")
# |coordinate| bound of a view (and of c): past it float32 |z|² overflows within a step or two
MAX_COORDINATE = 1e9
# Coloring and PNG encoding cost per pixel, in iterations of the escape loop (measured on CPU:
# ~67 ns a pixel against ~0.7 ns an iteration); counted in limits.max_pixel_iterations.
PIXEL_COST_ITERATIONS = 100


def _invalid(field: str, msg: str, kind: str = "value_error") -> InvalidInput:
    return InvalidInput(f"{field}: {msg}", errors=[{"loc": [field], "msg": msg, "type": kind}])


@dataclass(frozen=True)
class Plane:
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    width: int
    height: int

    def pixel_centers(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """Column x values (left to right) and row y values (top to bottom), in ``dtype``."""
        dx = (self.x_max - self.x_min) / self.width
        dy = (self.y_max - self.y_min) / self.height
        columns = self.x_min + (np.arange(self.width, dtype=np.float64) + 0.5) * dx
        rows = self.y_max - (np.arange(self.height, dtype=np.float64) + 0.5) * dy
        return columns.astype(dtype), rows.astype(dtype)

    def box(self) -> dict[str, float]:
        return {"x_min": self.x_min, "x_max": self.x_max, "y_min": self.y_min, "y_max": self.y_max}


def make_plane(width: int, height: int, **given: float | None) -> Plane:
    """A Plane from either box fields or center fields (``None`` = not given).

    Nothing given: the seed's view. Raises InvalidInput (422) for a mix of both forms, a
    partial box, an empty or inverted box, or a non-finite number.
    """
    for field in ("width", "height"):
        value = width if field == "width" else height
        if value < 1:
            raise _invalid(field, "must be at least 1 pixel", "greater_than_equal")
    for field, value in given.items():
        if value is not None and not math.isfinite(value):
            raise _invalid(field, "must be a finite number", "finite_number")
    box = {f: given.get(f) for f in BOX_FIELDS}
    center = {f: given.get(f) for f in CENTER_FIELDS}
    has_box = any(v is not None for v in box.values())
    has_center = any(v is not None for v in center.values())
    if has_box and has_center:
        raise InvalidInput(
            "Give the view either as x_min, x_max, y_min, y_max or as center_x, center_y, "
            "scale, not both.",
            errors=[{"loc": [f], "msg": "conflicts with the box fields", "type": "conflict"}
                    for f in CENTER_FIELDS if center[f] is not None],
        )
    if has_center:
        if center["scale"] is None:
            raise _invalid("scale", "is required with center_x/center_y (the view's width)",
                           "missing")
        if center["scale"] <= 0:
            raise _invalid("scale", "must be greater than 0", "greater_than")
        cx, cy = center["center_x"] or 0.0, center["center_y"] or 0.0
        half_w = center["scale"] / 2
        half_h = half_w * height / width
        box = {"x_min": cx - half_w, "x_max": cx + half_w, "y_min": cy - half_h, "y_max": cy + half_h}
        for field, value in box.items():  # the box fields' bound holds for a derived box too
            if abs(value) > MAX_COORDINATE:
                raise _invalid(field, f"the view reaches {value:g}, past ±{MAX_COORDINATE:g}: "
                               "use a smaller scale or a less tall picture", "out_of_range")
    elif has_box:
        missing = [f for f, v in box.items() if v is None]
        if missing:
            raise InvalidInput(
                f"A box needs all of x_min, x_max, y_min, y_max; missing: {', '.join(missing)}.",
                errors=[{"loc": [f], "msg": "is required with the other box fields",
                         "type": "missing"} for f in missing],
            )
    else:
        box = dict(zip(BOX_FIELDS, SEED_BOX, strict=True))
    for low, high in (("x_min", "x_max"), ("y_min", "y_max")):
        if not box[low] < box[high]:
            raise _invalid(high, f"must be greater than {low} ({box[high]!r} <= {box[low]!r})",
                           "inverted_box")
    return Plane(width=width, height=height, **box)


def check_resolution(plane: Plane, dtype, precision: str) -> None:
    """422 when neighboring pixel centers round to the same number in the working precision."""
    columns, rows = plane.pixel_centers(dtype)
    for field, values, step in (("x", columns, np.diff(columns)), ("y", rows, -np.diff(rows))):
        if values.size > 1 and not np.all(step > 0):
            raise _invalid(
                f"{field}_max",
                f"the view is finer than {precision} can tell apart: neighboring pixels have "
                f"the same {field}. Zoom out, use fewer pixels, or use precision float64.",
                "resolution",
            )


def check_limits(width: int, height: int, max_iter: int, limits: Limits) -> None:
    """413 naming the limit when the image, its shape, the iterations or the work are too large.

    The work counts every pixel's coloring and encoding as PIXEL_COST_ITERATIONS iterations, so a
    huge picture at max_iter = 1 is not free.
    """
    pixels = width * height
    aspect = max(width, height) / max(min(width, height), 1)
    work = pixels * (max_iter + PIXEL_COST_ITERATIONS)
    for name, value, maximum, what in (
        ("max_pixels", pixels, limits.max_pixels, f"{width}x{height} = {pixels} pixels"),
        ("max_aspect_ratio", aspect, limits.max_aspect_ratio,
         f"{width}x{height} has an aspect ratio of {aspect:.10g}"),
        ("max_iter", max_iter, limits.max_iter, f"max_iter = {max_iter}"),
        ("max_pixel_iterations", work, limits.max_pixel_iterations,
         f"{pixels} pixels x ({max_iter} iterations + {PIXEL_COST_ITERATIONS} for coloring and "
         f"encoding) = {work}"),
    ):
        if value > maximum:
            raise LimitExceeded(
                f"{what} is over the limit {name} = {maximum}.",
                limit=name, maximum=maximum, value=value,
            )


def tile_plane(z: int, x: int, y: int, limits: Limits) -> Plane:
    """The view of XYZ tile (z, x, y) over TILE_WORLD; 404 for a tile outside the world."""
    if not 0 <= z <= limits.max_tile_zoom:
        raise LimitExceeded(
            f"Zoom level {z} is outside 0..{limits.max_tile_zoom} (limit max_tile_zoom).",
            limit="max_tile_zoom", maximum=limits.max_tile_zoom, value=z,
        )
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise NotFound(f"There is no tile ({z}, {x}, {y}): at zoom {z}, x and y run 0..{n - 1}.")
    x_min, x_max, y_min, y_max = TILE_WORLD
    size_x, size_y = (x_max - x_min) / n, (y_max - y_min) / n
    return Plane(
        x_min=x_min + x * size_x, x_max=x_min + (x + 1) * size_x,
        y_min=y_max - (y + 1) * size_y, y_max=y_max - y * size_y,
        width=TILE_PIXELS, height=TILE_PIXELS,
    )


def tile_max_iter(z: int) -> int:
    """Iterations for zoom z when none is given: deeper views need more to resolve the edge."""
    return 256 + 128 * z


def tile_precision(z: int) -> str:
    """float32 while a tile pixel spans at least 64 float32 steps at |x| < 4, else float64."""
    pixel = (TILE_WORLD[1] - TILE_WORLD[0]) / (TILE_PIXELS << z)
    return "float32" if pixel >= 64 * np.spacing(np.float32(4.0)) else "float64"
