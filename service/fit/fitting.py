"""The line fit's entry point: check the points, then fit by the method asked for.

:mod:`.line` holds the data checks, the closed-form fit and the uncertainty conventions both
methods share; :mod:`.descent` the gradient-descent fit on JAX or TensorFlow.
"""

from __future__ import annotations

from typing import Any

from labcrunch_service.errors import InvalidInput
from labcrunch_service.fit.descent import gradient_descent
from labcrunch_service.fit.line import (
    GRADIENT_DESCENT,
    LEAST_SQUARES,
    DescentOptions,
    LineFit,
    least_squares,
    line_points,
)
from labcrunch_service.settings import Limits, Settings


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


def warmup(settings: Settings) -> None:
    """Compile the JAX epoch (SGD) and Hessian for the seed notebook's shape: 1,000 points, batches
    of 100 (other sizes compile on first use, then share bucketed shapes)."""
    x = [float(i) for i in range(1000)]
    fit_line(x, [2.5 * v + 1.2 for v in x], method="gradient_descent", backend="jax",
             descent=DescentOptions(epochs=1), limits=settings.limits)
