"""The likelihood on a plane through parameter space: the seed notebook's picture, as data.

Two parameters vary over a grid; every other parameter stays at the best fit (or at the values
given). ``logpdf`` (or ``twice_nll = −2·logpdf``) is evaluated on the fine grid and its gradient
in the two scanned parameters on a coarser one, each in one vectorised, jitted computation
(``jax.lax.map`` over batches of points, see :data:`models.SCAN_BATCH`).

With ``profile``, the other free parameters are instead minimised at every grid point (one fit
per point, all started from the best fit or ``at``, as one batch of the model's Newton fits,
progress reported in ``points``): the profile likelihood. Its gradient in (x, y) is the partial
gradient at the profiled point (the envelope theorem: the other parameters' own gradient
vanishes there), so the gradient grid is profiled too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from labcrunch_service import progress
from labcrunch_service.errors import InvalidInput
from labcrunch_service.pyhf.checks import check_scan
from labcrunch_service.pyhf.fit import FitSettings, best_fit, fit_options
from labcrunch_service.pyhf.models import (
    CompiledModel,
    fixed_mask,
    load,
    parameter_values,
)
from labcrunch_service.settings import Limits

if TYPE_CHECKING:
    from labcrunch_service.pyhf.schemas import ScanRequest


def _plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(len(y)*len(x), 2) points, row-major over (y, x): reshaped to (ny, nx) they match
    ``np.meshgrid(x, y)`` and ``pcolormesh(x, y, values)``."""
    gx, gy = np.meshgrid(x, y)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _profile(cm: CompiledModel, data: np.ndarray, plane: np.ndarray, start: np.ndarray, idx: np.ndarray,
             settings: FitSettings, done: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """At each (x, y) of ``plane``: minimise twice_nll over the other free parameters.

    Returns the profiled parameter vectors (N, npars) and twice_nll (N,); NaN where a fit fails.
    ``done`` of ``total`` points were profiled before these (for progress).
    """
    options = fit_options(cm, FitSettings(None, settings.par_bounds, settings.fixed_params))
    fixed = options.fixed.copy()
    fixed[idx] = True
    init = np.repeat(start[None, :], len(plane), axis=0)
    init[:, idx] = plane
    results = cm.fits.minimize(options.batch(data, init, fixed), "newton",
                               report=lambda k, _: progress.report(done + k, total, "points"))
    failed = ~(results.converged & np.isfinite(results.twice_nll))
    rows = np.where(failed[:, None], np.nan, results.pars)
    return rows, np.where(failed, np.nan, results.twice_nll)


def scan(request: ScanRequest, limits: Limits) -> dict[str, Any]:
    """Values on an ``x.points × y.points`` grid and gradients on a ``gradient_points`` grid.

    The other parameters sit at the best fit (found with the request's fit options) unless ``at``
    gives them; ``at`` may name just some, the rest take the model's suggested init. With
    ``profile`` the other free parameters are minimized at each point, starting from there.
    """
    check_scan(request, limits)
    cm, data = load(request, limits)
    x, y, gradient_points, profile = request.x, request.y, request.gradient_points, request.profile
    if x.name == y.name:
        raise InvalidInput(
            f"x and y both name {x.name!r}; a scan needs two different parameters.",
            errors=[{"loc": ["body", "y", "name"], "msg": "same parameter as x", "type": "value_error"}],
        )
    idx = np.asarray([cm.index_of(x.name, ["body", "x", "name"]), cm.index_of(y.name, ["body", "y", "name"])],
                     dtype=np.int32)
    settings = FitSettings.of(request)
    if request.at is None:
        base = best_fit(cm, data, settings).pars
        center = "bestfit"
    else:
        base = parameter_values(cm, request.at, loc="at")
        center = "given"

    xs = np.linspace(x.low, x.high, x.points, dtype=np.float64)
    ys = np.linspace(y.low, y.high, y.points, dtype=np.float64)
    gxs = np.linspace(x.low, x.high, gradient_points[0], dtype=np.float64)
    gys = np.linspace(y.low, y.high, gradient_points[1], dtype=np.float64)

    failed = 0
    others_free = ~fixed_mask(cm, settings.fixed_params)
    others_free[idx] = False
    if profile and others_free.any():  # with nothing else free, the plain scan is the profile
        total = len(xs) * len(ys) + len(gxs) * len(gys)
        _, twice_nll = _profile(cm, data, _plane(xs, ys), base, idx, settings, 0, total)
        logpdf = -0.5 * twice_nll
        rows, _ = _profile(cm, data, _plane(gxs, gys), base, idx, settings, len(xs) * len(ys), total)
        grad = np.asarray(cm.gradients(jnp.asarray(np.nan_to_num(rows), dtype=jnp.float64),
                                       jnp.asarray(data, dtype=jnp.float64)), dtype=np.float64)[:, idx]
        grad[np.isnan(rows).any(axis=1)] = np.nan
        failed = int(np.isnan(twice_nll).sum() + np.isnan(rows).any(axis=1).sum())
    else:
        args = (jnp.asarray(base, dtype=jnp.float64), jnp.asarray(idx), jnp.asarray(data, dtype=jnp.float64))
        logpdf = np.asarray(cm.scan_values(jnp.asarray(_plane(xs, ys), dtype=jnp.float64), *args),
                            dtype=np.float64)
        grad = np.asarray(cm.scan_gradients(jnp.asarray(_plane(gxs, gys), dtype=jnp.float64), *args),
                          dtype=np.float64)
    scale = -2.0 if request.quantity == "twice_nll" else 1.0  # twice_nll = −2·logpdf, and so its gradient
    return {
        "parameters": [x.name, y.name],
        "quantity": request.quantity,
        "x": xs,
        "y": ys,
        "values": scale * logpdf.reshape(y.points, x.points),
        "gradient_x": gxs,
        "gradient_y": gys,
        "gradient": {
            "d_dx": scale * grad[:, 0].reshape(gradient_points[1], gradient_points[0]),
            "d_dy": scale * grad[:, 1].reshape(gradient_points[1], gradient_points[0]),
        },
        "center": center,
        "profiled": profile,
        "base_parameters": cm.par_names,
        "base": base,
        "warnings": [f"{failed} profile fits did not converge; those points are NaN."] if failed else [],
    }
