"""Maximum-likelihood fits with the exact (autodiff) Hessian, covariance and ellipses.

The covariance of the maximum-likelihood estimate is the inverse of the Hessian of the
*negative log-likelihood*, NLL = −ln L. pyhf's objective is twice that, ``twice_nll = −2 ln L``,
so with ``H = ∇² twice_nll`` the covariance is ``inv(H / 2) = 2 · inv(H)``. (The seed notebook
took ``inv(H)`` and got half the covariance.) Only the free parameters enter: fixed ones are
dropped from the Hessian before it is inverted, never inverted into a singular matrix.

Every fit goes through the model's :class:`~labcrunch_service.pyhf.minimizers.ModelFits`: by
default the bounded Newton method, whose Hessian at the minimum is the one the covariance uses.
A best fit on a bound is named in ``warnings`` (the Hessian there is the curvature at the bound,
not an uncertainty).

:func:`fit` is the /v1/pyhf/fit operation (:func:`batch_fit` when ``data`` lists datasets);
:func:`best_fit`, :func:`fit_options` and :class:`FitSettings` serve the scan and the hypothesis
tests too.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from labcrunch_service import progress
from labcrunch_service.errors import InvalidInput
from labcrunch_service.pyhf.checks import check_fit, is_batch
from labcrunch_service.pyhf.ellipses import Region, ellipse_from_covariance
from labcrunch_service.pyhf.minimizers import FitBatch, FitResults, Optimizer
from labcrunch_service.pyhf.models import (
    CompiledModel,
    fixed_mask,
    load,
    model_from_spec,
    parameter_bounds,
    parameter_values,
    resolve_data,
)
from labcrunch_service.pyhf.schemas import DEFAULT_ELLIPSE_PAIRS
from labcrunch_service.settings import Limits, Settings

if TYPE_CHECKING:
    from labcrunch_service.pyhf.schemas import FitRequest, PyhfRequest


@dataclass(frozen=True)
class FitSettings:
    """The request's fit options, by parameter name (None: the model's suggestions)."""

    init_pars: dict[str, float] | None = None
    par_bounds: dict[str, Sequence[float]] | None = None
    fixed_params: Sequence[str] | None = None
    optimizer: Optimizer = "newton"
    do_grad: bool | None = None

    @classmethod
    def of(cls, request: PyhfRequest) -> FitSettings:
        return cls(request.init_pars, request.par_bounds, request.fixed_params,
                   getattr(request, "optimizer", "newton"), getattr(request, "do_grad", None))


@dataclass(frozen=True)
class FitOptions:
    """A request's start, box and fixed mask as arrays, checked against each other."""

    init: np.ndarray
    bounds: np.ndarray  # (npars, 2)
    fixed: np.ndarray  # bool

    def batch(self, data: np.ndarray, init: np.ndarray | None = None, fixed: np.ndarray | None = None) -> FitBatch:
        return FitBatch.of(data, self.init if init is None else init, self.fixed if fixed is None else fixed,
                           self.bounds)


def fit_options(cm: CompiledModel, settings: FitSettings) -> FitOptions:
    """The start, bounds and fixed mask; 422 when nothing is free or a start is out of bounds."""
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
    return FitOptions(init, bounds, fixed)


@dataclass(frozen=True)
class BestFit:
    pars: np.ndarray
    twice_nll: float
    fixed: np.ndarray  # bool mask
    converged: bool
    hessian: np.ndarray  # of twice_nll, every parameter
    bounds: np.ndarray  # (npars, 2)


def refuse_failed(results: FitResults, what: str, *, require_convergence: bool = True) -> None:
    """422 when a fit gave no finite answer or did not converge (with ``require_convergence``
    False, a Newton fit that stopped short is let through, for the caller to warn about)."""
    stopped = ~results.converged if (require_convergence or results.hessian is None) else False
    failed = ~np.isfinite(results.twice_nll) | stopped
    if np.any(failed):
        reason = f": {results.message}" if results.message else ""
        raise InvalidInput(
            f"The {what} did not converge{reason}. Try other init_pars, par_bounds or fixed_params.",
            errors=[{"loc": ["body"], "msg": f"the {what} did not converge", "type": "fit_failed"}],
        )


def hessians(cm: CompiledModel, results: FitResults, data: np.ndarray) -> np.ndarray:
    """The Hessians of twice_nll at each result: the Newton fit's own, or (pyhf's optimizers)
    the compiled exact Hessian at their best fits."""
    if results.hessian is not None:
        return results.hessian
    data = np.atleast_2d(data)
    return np.stack([np.asarray(cm.hessian(jnp.asarray(p, dtype=jnp.float64),
                                           jnp.asarray(data[min(k, len(data) - 1)], dtype=jnp.float64)),
                                dtype=np.float64)
                     for k, p in enumerate(results.pars)])


def best_fit(cm: CompiledModel, data: np.ndarray, settings: FitSettings) -> BestFit:
    """Minimise twice_nll over the free parameters; 422 when nothing is free or the fit fails."""
    options = fit_options(cm, settings)
    results = cm.fits.minimize(options.batch(data), settings.optimizer, do_grad=settings.do_grad)
    refuse_failed(results, f"{settings.optimizer} fit", require_convergence=False)
    return BestFit(pars=results.pars[0], twice_nll=float(results.twice_nll[0]), fixed=options.fixed,
                   converged=bool(results.converged[0]), hessian=hessians(cm, results, data)[0],
                   bounds=options.bounds)


def on_bounds(names: Sequence[str], pars: np.ndarray, bounds: np.ndarray, fixed: np.ndarray) -> list[str]:
    """The free parameters that ended on a bound, as ``name (lower bound 0)``."""
    width = bounds[:, 1] - bounds[:, 0]
    slack = 1e-9 * np.where(np.isfinite(width), width, 1.0)
    out = []
    for i in np.flatnonzero(~fixed):
        for side, edge in (("lower", bounds[i, 0]), ("upper", bounds[i, 1])):
            if abs(pars[i] - edge) <= slack[i]:
                out.append(f"{names[i]} ({side} bound {edge:g})")
    return out


def bound_warning(parameters: list[str]) -> list[str]:
    if not parameters:
        return []
    return [f"The best fit lies on a bound for {', '.join(parameters)}: there the Hessian is the "
            "curvature at the bound, not an uncertainty (the likelihood's minimum may lie beyond it)."]


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


#: A Hessian whose scale-free form D^(-1/2) H D^(-1/2) (D = diag H) has an eigenvalue below
#: this is treated as singular: parameters so degenerate (a correlation of 1 − 1e-8) have no
#: meaningful covariance, and a finite-difference Hessian (a new model's first answer) is only
#: good to ~1e-10.
DEGENERACY = 1e-8


def free_covariance(hessian: np.ndarray) -> np.ndarray | None:
    """2·inv(hessian) when the Hessian is finite and positive definite, else None."""
    if not np.isfinite(hessian).all():  # e.g. a best fit on a bound where the model breaks down
        return None
    diagonal = np.diag(hessian)
    if np.any(diagonal <= 0):
        return None
    scaled = hessian / np.sqrt(np.outer(diagonal, diagonal))
    if np.linalg.eigvalsh(scaled)[0] <= DEGENERACY:
        return None
    try:
        np.linalg.cholesky(hessian)  # positive definite ⇔ a proper minimum with finite errors
    except np.linalg.LinAlgError:
        return None
    return covariance_from_hessian(hessian)


NOT_POSITIVE_DEFINITE = ("The Hessian at the best fit is not finite and positive definite (parameters are "
                         "degenerate or unconstrained, or the fit sits on a bound), so the covariance is NaN; "
                         "fix or bound the offending parameters.")


def fit(request: FitRequest, limits: Limits) -> dict[str, Any]:
    """Best fit, Hessian of twice_nll, covariance, correlation and ellipses (free parameters);
    for a list of datasets, :func:`batch_fit`."""
    check_fit(request, limits)
    if is_batch(request.data):
        return batch_fit(request, limits)
    cm, data = load(request, limits)
    settings = FitSettings.of(request)
    region: Region = request.ellipse_region
    names = cm.par_names
    free_names = [n for n, f in zip(names, fixed_mask(cm, settings.fixed_params), strict=True) if not f]
    pairs = _ellipse_pairs(cm, free_names, request.ellipse_pairs)  # refuse a bad pair before fitting
    found = best_fit(cm, data, settings)
    free = np.flatnonzero(~found.fixed)
    hessian = found.hessian[np.ix_(free, free)]
    warnings: list[str] = []
    if not found.converged:
        warnings.append(f"The {settings.optimizer} fit did not converge: the best fit and its Hessian "
                        "are where it stopped.")
    warnings += bound_warning(on_bounds(names, found.pars, found.bounds, found.fixed))
    covariance = free_covariance(hessian)
    if covariance is None:
        covariance = np.full_like(hessian, np.nan)
        warnings.append(NOT_POSITIVE_DEFINITE)
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


def batch_fit(request: FitRequest, limits: Limits) -> dict[str, Any]:
    """One fit per dataset of ``request.data`` (a list), as one batch: best fits, −2 ln L and
    uncertainties per dataset."""
    cm = model_from_spec(request.model.model_dump(), max_parameters=limits.max_pyhf_parameters)
    datasets = np.stack([resolve_data(cm, values, request.asimov_pars, loc=("data", k))
                         for k, values in enumerate(request.data)])
    settings = FitSettings.of(request)
    options = fit_options(cm, settings)
    names = cm.par_names
    total = len(datasets)
    results = cm.fits.minimize(options.batch(datasets), settings.optimizer, do_grad=settings.do_grad,
                               report=lambda done, _: progress.report(done, total, "fits"))
    free = np.flatnonzero(~options.fixed)
    finite = np.isfinite(results.twice_nll)
    good = finite & results.converged
    matrices = hessians(cm, FitResults(np.where(finite[:, None], results.pars, options.init),
                                       results.twice_nll, results.hessian, results.converged), datasets)
    uncertainties = np.zeros((total, len(names)), dtype=np.float64)
    singular = 0
    for k in range(total):
        covariance = free_covariance(matrices[k][np.ix_(free, free)]) if finite[k] else None
        if covariance is None:
            uncertainties[k, free] = np.nan
            singular += 1
        else:
            uncertainties[k, free] = np.sqrt(np.diag(covariance))
    warnings = []
    if not good.all():
        warnings.append(f"{int((~good).sum())} of {total} fits did not converge (converged: false): "
                        "their rows are where the fit stopped.")
    if singular:
        warnings.append(f"{singular} of {total} Hessians are not finite and positive definite: those "
                        "uncertainties are NaN.")
    bounded = sorted({p for k in range(total) if finite[k]
                      for p in on_bounds(names, results.pars[k], options.bounds, options.fixed)})
    if bounded:
        warnings.append(f"Some best fits lie on a bound, for {', '.join(bounded)}: there the Hessian is "
                        "the curvature at the bound, not an uncertainty.")
    return {
        "parameters": names,
        "poi": cm.poi_name,
        "datasets": total,
        "bestfit": results.pars,
        "twice_nll": results.twice_nll,
        "free_parameters": [names[i] for i in free],
        "fixed": [names[i] for i in np.flatnonzero(options.fixed)],
        "uncertainties": uncertainties,
        "converged": good,
        "optimizer": settings.optimizer,
        "warnings": warnings,
    }


def warmup(settings: Settings) -> None:
    """One small fit at start-up, then its model's whole-fit program, and the same model as a
    workspace: loads pyhf's schemas and starts XLA, so the first request pays only its own
    model's compilation (these models stay in the model cache, the first one compiled)."""
    from labcrunch_service.pyhf.schemas import FitRequest

    seed = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [10.0],
                       "bkg_uncertainty": [3.5]}}
    fit(FitRequest.model_validate({"model": seed, "data": "asimov"}), settings.limits)
    cm = model_from_spec(seed, max_parameters=settings.limits.max_pyhf_parameters)
    cm.fits.program()
    workspace = {"channels": cm.model.spec["channels"], "observations": [{"name": "singlechannel", "data": [15.0]}],
                 "measurements": [{"name": "seed", "config": {"poi": "mu", "parameters": []}}], "version": "1.0.0"}
    model_from_spec({"workspace": workspace}, max_parameters=settings.limits.max_pyhf_parameters)
