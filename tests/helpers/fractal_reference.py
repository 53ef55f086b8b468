"""The escape-time definition in plain Python, the oracle of the fractal tests.

The reference iterates the definition in Python complex numbers from the pixel centers as
documented (computed here independently, then rounded to the working precision) and carries a
bound on how far an orbit computed with that precision's rounding can drift.
"""

from __future__ import annotations

import numpy as np

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}
SAFETY = 4.0


def column_centers(n: int, low: float, high: float) -> list[float]:
    """Pixel centers as the definition states them (float64), left to right."""
    return [low + (j + 0.5) * ((high - low) / n) for j in range(n)]


def row_centers(n: int, low: float, high: float) -> list[float]:
    """Top to bottom: row i is at high - (i + 1/2) * (high - low) / n."""
    return [high - (i + 0.5) * ((high - low) / n) for i in range(n)]


def rounded(value: float, precision: str) -> float:
    return float(np.float32(value)) if precision == "float32" else value


def reference_count(kind, x, y, c, max_iter, radius, precision):
    """(count, determined): the definition in plain Python, and whether rounding can change it.

    ``drift`` bounds |computed z_n − exact z_n| to first order plus the quadratic term: squaring
    multiplies an existing error by about 2|z|, and each step's own rounding adds at most a few
    units of roundoff of |z|² + |c|. The escape test itself may be off by a few units of R².
    """
    unit = UNIT_ROUNDOFF[precision] + 2.0**-53  # the kernel's rounding plus this reference's own
    z, c = (0j, complex(x, y)) if kind == "mandelbrot" else (complex(x, y), c)
    drift, determined = 0.0, True
    for n in range(1, max_iter + 1):
        drift = (2 * abs(z) + drift) * drift + 5 * unit * (abs(z) ** 2 + abs(c))
        z = z * z + c
        if abs(abs(z) - radius) <= SAFETY * drift + 4 * unit * radius:
            determined = False
        if abs(z) > radius:
            return n, determined
    return max_iter, determined


# Pixel centers at the integers a + bi, a, b in -2..2.
LATTICE = {"width": 5, "height": 5, "x_min": -2.5, "x_max": 2.5, "y_min": -2.5, "y_max": 2.5}
