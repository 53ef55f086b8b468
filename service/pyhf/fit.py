"""Maximum-likelihood fits with the exact (autodiff) Hessian, covariance and ellipses.

The covariance of the maximum-likelihood estimate is the inverse of the Hessian of the
*negative log-likelihood*, NLL = −ln L. pyhf's objective is twice that, ``twice_nll = −2 ln L``,
so with ``H = ∇² twice_nll`` the covariance is ``inv(H / 2) = 2 · inv(H)``. (The seed notebook
took ``inv(H)`` and got half the covariance.) Only the free parameters enter: fixed ones are
dropped from the Hessian before it is inverted, never inverted into a singular matrix.

:func:`fit` is the /v1/pyhf/fit operation; :func:`best_fit` and :class:`FitSettings` serve the
scan and the hypothesis tests too.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import jax.numpy as jnp
import numpy as np
import pyhf

from labcrunch_service.errors import InvalidInput
from labcrunch_service.pyhf.checks import check_fit
from labcrunch_service.pyhf.ellipses import Region, ellipse_from_covariance
from labcrunch_service.pyhf.models import (
    CompiledModel,
    fixed_mask,
    load,
    parameter_bounds,
    parameter_values,
)
from labcrunch_service.pyhf.schemas import DEFAULT_ELLIPSE_PAIRS
from labcrunch_service.settings import Limits, Settings

if TYPE_CHECKING:
    from labcrunch_service.pyhf.schemas import FitRequest, PyhfRequest

Optimizer = Literal["scipy", "minuit"]


@dataclass(frozen=True)
class FitSettings:
    """The request's fit options, by parameter name (None: the model's suggestions)."""

    init_pars: dict[str, float] | None = None
    par_bounds: dict[str, Sequence[float]] | None = None
    fixed_params: Sequence[str] | None = None
    optimizer: Optimizer = "scipy"

    @classmethod
    def of(cls, request: PyhfRequest, optimizer: Optimizer = "scipy") -> FitSettings:
        return cls(request.init_pars, request.par_bounds, request.fixed_params, optimizer)


@dataclass(frozen=True)
class BestFit:
    pars: np.ndarray
    twice_nll: float
    fixed: np.ndarray  # bool mask
    converged: bool
    optimizer_message: str


def _optimizer(name: Optimizer) -> Any:
    # One optimizer object per call: pyhf's global one is never switched per request.
    return pyhf.optimize.minuit_optimizer() if name == "minuit" else pyhf.optimize.scipy_optimizer()


@contextlib.contextmanager
def refusing_failed_fits(what: str) -> Iterator[None]:
    """A fit that does not converge on this model and data (pyhf's FailedMinimization) → 422."""
    try:
        yield
    except pyhf.exceptions.FailedMinimization as exc:
        raise InvalidInput(
            f"The {what} did not converge: {exc}. Try other init_pars, par_bounds or fixed_params.",
            errors=[{"loc": ["body"], "msg": str(exc), "type": "fit_failed"}],
        ) from None


def best_fit(cm: CompiledModel, data: np.ndarray, settings: FitSettings) -> BestFit:
    """Minimise twice_nll over the free parameters; 422 when nothing is free or the fit fails."""
    init = parameter_values(cm, settings.init_pars, loc="init_pars")
    bounds = parameter_bounds(cm, settings.par_bounds)
    fixed = fixed_mask(cm, settings.fixed_params)
    if fixed.all():
        raise InvalidInput(
            "Every parameter of the model is fixed: there is nothing to fit. Free at least one.",
            errors=[{"loc": ["body", "fixed_params"], "msg": "every parameter is fixed", "type": "value_error"}],
        )
    outside = [name for name, v, (lo, hi), f in zip(cm.par_names, init, bounds, fixed, strict=True)
               if not f and not lo <= v <= hi]
    if outside:
        raise InvalidInput(
            f"Initial values lie outside their bounds for: {', '.join(outside[:10])}.",
            errors=[{"loc": ["body", "init_pars", name], "msg": "outside par_bounds", "type": "value_error"}
                    for name in outside[:10]],
        )
    fixed_vals = [(int(i), float(init[i])) for i in np.flatnonzero(fixed)]
    with refusing_failed_fits(f"{settings.optimizer} fit"):
        pars, fval, result = _optimizer(settings.optimizer).minimize(
            pyhf.infer.mle.twice_nll, jnp.asarray(data, dtype=jnp.float64), cm.model,
            init.tolist(), bounds.tolist(), fixed_vals,
            return_fitted_val=True, return_result_obj=True,
        )
    return BestFit(
        pars=np.asarray(pars, dtype=np.float64),
        twice_nll=float(fval),
        fixed=fixed,
        converged=bool(result.success),
        optimizer_message=str(getattr(result, "message", "")),
    )


def covariance_from_hessian(hessian_twice_nll: np.ndarray) -> np.ndarray:
    """cov = inv(∇² NLL) = inv(H / 2) = 2 · inv(H), for H the Hessian of twice_nll."""
    return 2.0 * np.linalg.inv(hessian_twice_nll)


def correlation_from_covariance(cov: np.ndarray) -> np.ndarray:
    sigma = np.sqrt(np.diag(cov))
    return cov / np.outer(sigma, sigma)


def _ellipse_pairs(cm: CompiledModel, free_names: list[str],
                   pairs: Sequence[Sequence[str]] | None) -> list[tuple[str, str]]:
    if pairs is None:
        poi = cm.poi_name
        if poi is None or poi not in free_names:
            return list(itertools.islice(itertools.combinations(free_names, 2), DEFAULT_ELLIPSE_PAIRS))
        return [(poi, other) for other in free_names if other != poi][:DEFAULT_ELLIPSE_PAIRS]
    out = []
    for i, pair in enumerate(pairs):
        for j, name in enumerate(pair):
            cm.index_of(name, ["body", "ellipse_pairs", i, j])
            if name not in free_names:
                raise InvalidInput(
                    f"ellipse_pairs[{i}] names {name!r}, which is fixed: it has no uncertainty.",
                    errors=[{"loc": ["body", "ellipse_pairs", i, j], "msg": "parameter is fixed",
                             "type": "value_error"}],
                )
        if pair[0] == pair[1]:
            raise InvalidInput(
                f"ellipse_pairs[{i}] names {pair[0]!r} twice; an ellipse needs two parameters.",
                errors=[{"loc": ["body", "ellipse_pairs", i], "msg": "two different parameters needed",
                         "type": "value_error"}],
            )
        out.append((pair[0], pair[1]))
    return out


def fit(request: FitRequest, limits: Limits) -> dict[str, Any]:
    """Best fit, Hessian of twice_nll, covariance, correlation and ellipses (free parameters)."""
    check_fit(request, limits)
    cm, data = load(request, limits)
    settings = FitSettings.of(request, request.optimizer)
    region: Region = request.ellipse_region
    names = cm.par_names
    free_names = [n for n, f in zip(names, fixed_mask(cm, settings.fixed_params), strict=True) if not f]
    pairs = _ellipse_pairs(cm, free_names, request.ellipse_pairs)  # refuse a bad pair before fitting
    found = best_fit(cm, data, settings)
    hessian_full = np.asarray(
        cm.hessian(jnp.asarray(found.pars, dtype=jnp.float64), jnp.asarray(data, dtype=jnp.float64)),
        dtype=np.float64,
    )
    free = np.flatnonzero(~found.fixed)
    hessian = hessian_full[np.ix_(free, free)]
    warnings: list[str] = []
    try:
        if not np.isfinite(hessian).all():  # e.g. a best fit on a bound where the model breaks down
            raise np.linalg.LinAlgError("non-finite Hessian")
        np.linalg.cholesky(hessian)  # positive definite ⇔ a proper minimum with finite errors
        covariance = covariance_from_hessian(hessian)
    except np.linalg.LinAlgError:
        covariance = np.full_like(hessian, np.nan)
        warnings.append(
            "The Hessian at the best fit is not finite and positive definite (parameters are "
            "degenerate or unconstrained, or the fit sits on a bound), so the covariance is NaN; "
            "fix or bound the offending parameters."
        )
    correlation = correlation_from_covariance(covariance)
    uncertainties = np.zeros(len(names), dtype=np.float64)
    uncertainties[free] = np.sqrt(np.diag(covariance))

    ellipses = []
    if np.isfinite(covariance).all():
        position = {name: k for k, name in enumerate(free_names)}
        for a, b in pairs:
            sub = np.ix_([position[a], position[b]], [position[a], position[b]])
            center = (found.pars[names.index(a)], found.pars[names.index(b)])
            for level in request.confidence_levels:
                ellipses.append(ellipse_from_covariance((a, b), center, covariance[sub], level,
                                                        region).as_dict())
    return {
        "parameters": names,
        "poi": cm.poi_name,
        "bestfit": found.pars,
        "twice_nll": found.twice_nll,
        "free_parameters": free_names,
        "fixed": [names[i] for i in np.flatnonzero(found.fixed)],
        "hessian": hessian,
        "covariance": covariance,
        "correlation": correlation,
        "uncertainties": uncertainties,
        "converged": found.converged,
        "optimizer": settings.optimizer,
        "ellipses": ellipses,
        "warnings": warnings,
    }


def warmup(settings: Settings) -> None:
    """One small fit at start-up: loads pyhf's schemas and starts XLA, so the first request pays
    only its own model's compilation (this model stays in the model cache)."""
    from labcrunch_service.pyhf.schemas import FitRequest

    seed = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                       "bkg_uncertainty": [3.5]}}
    fit(FitRequest.model_validate({"model": seed, "data": "asimov"}), settings.limits)
