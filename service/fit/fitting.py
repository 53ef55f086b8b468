"""The line fit's entry point: check the points, then fit by the method asked for.

:mod:`.line` holds the data checks, the closed-form fit and the uncertainty conventions both
methods share; :mod:`.descent` the gradient-descent fit on JAX or TensorFlow.
"""

from __future__ import annotations

from typing import Any

from labcrunch_service.errors import InvalidInput
from labcrunch_service.fit.descent import DescentOptions, gradient_descent
from labcrunch_service.fit.line import (
    GRADIENT_DESCENT,
    LEAST_SQUARES,
    LineFit,
    least_squares,
    line_points,
)
from labcrunch_service.settings import Limits


def fit_line(x: Any, y: Any, sigma: Any = None, *, method: str = LEAST_SQUARES, backend: str = "jax",
             descent: DescentOptions | None = None, limits: Limits) -> LineFit:
    """Check the points against ``limits``, then fit y = m·x + q by ``method``."""
    if method not in (LEAST_SQUARES, GRADIENT_DESCENT):
        raise InvalidInput(f"Unknown method {method!r}; one of {[LEAST_SQUARES, GRADIENT_DESCENT]}.",
                           errors=[{"loc": ["body", "method"], "msg": "unknown", "type": "enum"}])
    points = line_points(x, y, sigma, max_points=limits.max_fit_points)
    if method == GRADIENT_DESCENT:
        return gradient_descent(points, descent or DescentOptions(), backend,
                                max_epochs=limits.max_fit_epochs, max_batches=limits.max_fit_batches)
    return least_squares(points)
