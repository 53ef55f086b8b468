"""Hypothesis tests (CLs, CLs+b, CLb; the discovery p-value p0) and upper limits on the POI.

The test statistics come from the service's own fits (:mod:`minimizers`: the Newton method by
default, or pyhf's SLSQP or MINUIT), the p-values from :mod:`calculators` (pyhf 0.7.6's
asymptotic and toy-based formulae), the toys from :mod:`toys`:

- asymptotics, for P POI values: the free fit and the fit at the Asimov POI on the data, then
  the free fit on the Asimov data and, per POI value, the fixed-POI fits on the data and on the
  Asimov data: 3 + 2P fits;
- toys, per POI value: the fits on the data at μ (s+b) and at 0 (b; 1 for q0) give the
  parameters the toys are drawn at; each toy's statistic is two fits. Progress is reported per
  toy (``toys``), asymptotic fits per POI value (``points``).

Upper limits come from a grid of POI values: the first crossing of CLs = level, linearly
interpolated (pyhf's ``linear_grid_scan`` for a falling CLs curve); a limit outside the grid is
null with a warning, never the grid's end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from labcrunch_service import progress
from labcrunch_service.errors import InvalidInput
from labcrunch_service.pyhf import calculators, toys
from labcrunch_service.pyhf.calculators import EXPECTED_SIGMAS, Band, PValues
from labcrunch_service.pyhf.checks import check_hypotest, check_upper_limit, poi_values
from labcrunch_service.pyhf.fit import FitOptions, FitSettings, fit_options, refuse_failed
from labcrunch_service.pyhf.minimizers import FitResults
from labcrunch_service.pyhf.models import CompiledModel, load
from labcrunch_service.settings import Limits

if TYPE_CHECKING:
    from labcrunch_service.pyhf.schemas import HypotestRequest, UpperLimitRequest


@dataclass(frozen=True)
class Test:
    """What every fit of one hypothesis test shares."""

    cm: CompiledModel
    data: np.ndarray
    options: FitOptions
    settings: FitSettings
    poi: int
    test_stat: calculators.TestStatistic

    def fits(self, datasets: np.ndarray, poi_values: Any, *, workload: int,
             report: Callable[[int, int], None] | None = None) -> FitResults:
        """One fit per row of ``datasets`` and of ``poi_values`` (broadcast against each other):
        the POI fixed at the value, or free where the value is NaN."""
        values = np.atleast_1d(np.asarray(poi_values, dtype=np.float64))
        init = np.repeat(self.options.init[None, :], len(values), axis=0)
        fixed = np.repeat(self.options.fixed[None, :], len(values), axis=0)
        pinned = ~np.isnan(values)
        init[pinned, self.poi] = values[pinned]
        fixed[:, self.poi] = pinned
        return self.cm.fits.minimize(self.options.batch(datasets, init, fixed), self.settings.optimizer,
                                     do_grad=self.settings.do_grad, workload=workload, report=report)

    def statistic(self, poi_value: np.ndarray | float, fixed: FitResults, free: FitResults) -> np.ndarray:
        return calculators.test_statistic(self.test_stat, poi_value, fixed.twice_nll, free.twice_nll,
                                          free.pars[:, self.poi])


def _prepare(request: HypotestRequest | UpperLimitRequest, limits: Limits, values: np.ndarray,
             where: str) -> Test:
    """The model, data and fit options; 422 for a model without a POI, a fixed POI or POI values
    outside the POI's bounds."""
    cm, data = load(request, limits)
    poi = cm.model.config.poi_index
    if poi is None:
        raise InvalidInput(
            "The model has no parameter of interest; a hypothesis test needs one (the "
            "measurement's 'poi').",
            errors=[{"loc": ["body", "model"], "msg": "model has no POI", "type": "value_error"}],
        )
    settings = FitSettings.of(request)
    options = fit_options(cm, settings)
    if options.fixed[poi]:
        raise InvalidInput(
            f"The POI {cm.poi_name!r} is fixed; the test fixes it at each tested value itself.",
            errors=[{"loc": ["body", "fixed_params"], "msg": "the POI cannot be fixed", "type": "value_error"}],
        )
    low, high = options.bounds[poi]
    outside = (values < low) | (values > high)
    if outside.any():
        raise InvalidInput(
            f"{where} holds POI values outside the POI's bounds [{low:g}, {high:g}] "
            f"(e.g. {values[outside][0]:g}).",
            errors=[{"loc": ["body", where], "msg": f"POI values must lie in [{low:g}, {high:g}]",
                     "type": "value_error"}],
        )
    return Test(cm, data, options, settings, poi, request.test_stat)


@dataclass(frozen=True)
class Outcome:
    """Observed p-values and expected bands at every POI value (toys: with uncertainties)."""

    observed: PValues
    band: Band
    uncertainties: PValues | None
    warnings: list[str]


def _unconverged(converged: np.ndarray, what: str) -> list[str]:
    count = int((~converged).sum())
    return [f"{count} of {converged.size} {what} did not converge (their statistics are used where the "
            "fits stopped)."] if count else []


FREE = np.nan  # a POI "value" that leaves the POI free (see Test.fits)


def _asymptotic(test: Test, values: np.ndarray) -> Outcome:
    total = 3 + 2 * len(values)
    name, asimov_mu = test.cm.poi_name, calculators.asimov_poi(test.test_stat)
    first = test.fits(test.data, [FREE, asimov_mu], workload=total)
    refuse_failed(first, f"fits to the data (free, and at {name} = {asimov_mu:g})")
    free = first.take(slice(0, 1))
    asimov = np.asarray(test.cm.model.expected_data(jnp.asarray(first.pars[1], dtype=jnp.float64)),
                        dtype=np.float64)
    # The free fit to the Asimov data, then per POI value the fits on the data and on the Asimov data.
    datasets = np.concatenate([asimov[None, :], np.tile(np.stack([test.data, asimov]), (len(values), 1))])
    second = test.fits(datasets, np.concatenate([[FREE], np.repeat(values, 2)]), workload=total,
                       report=lambda done, _: progress.report(max(done - 1, 0) // 2, len(values), "points"))
    refuse_failed(second, f"fits with {name} fixed")
    q = test.statistic(values, second.take(slice(1, None, 2)), free)
    q_asimov = test.statistic(values, second.take(slice(2, None, 2)), second.take(slice(0, 1)))
    observed, band = calculators.asymptotic(test.test_stat, q, q_asimov)
    return Outcome(observed, band, None, [])


def _toy_based(test: Test, values: np.ndarray, ntoys: int, seed: int) -> Outcome:
    rng = np.random.default_rng(seed)
    name, background_mu = test.cm.poi_name, calculators.asimov_poi(test.test_stat)
    total_toys = 2 * ntoys * len(values)
    workload = 2 * total_toys
    observed, bands, sigmas = [], [], []
    converged = []
    for k, mu in enumerate(values):
        # On the data: free, at μ (where the s+b toys are drawn) and at the background's μ.
        fits = test.fits(test.data, [FREE, mu, background_mu], workload=workload)
        refuse_failed(fits, f"fits to the data (free, and at {name} = {mu:g} and {background_mu:g})")
        q_observed = test.statistic(mu, fits.take(slice(1, 2)), fits.take(slice(0, 1)))[0]
        sampled = np.concatenate([toys.sample(test.cm.model, fits.pars[1], ntoys, rng),
                                  toys.sample(test.cm.model, fits.pars[2], ntoys, rng)])
        done = 2 * ntoys * k

        def report(fits_done: int, _: int, done: int = done) -> None:
            progress.report(done + fits_done // 2, total_toys, "toys")

        # Each toy's fixed-POI and free fits next to each other: progress counts whole toys.
        toy_fits = test.fits(np.repeat(sampled, 2, axis=0), np.tile([mu, FREE], len(sampled)),
                             workload=workload, report=report)
        converged.append(toy_fits.converged)
        stats = test.statistic(mu, toy_fits.take(slice(0, None, 2)), toy_fits.take(slice(1, None, 2)))
        signal_plus_background, background = stats[:ntoys], stats[ntoys:]
        p = calculators.empirical(q_observed, signal_plus_background, background)
        observed.append(p)
        sigmas.append(calculators.empirical_uncertainties(p, ntoys))
        bands.append(calculators.empirical_band(signal_plus_background, background))
    band = Band(*(np.stack([getattr(b, f) for b in bands]) for f in ("clsb", "clb", "cls")))
    return Outcome(_stack(observed), band, _stack(sigmas), _unconverged(np.concatenate(converged), "toy fits"))


def _stack(items: list[PValues]) -> PValues:
    return PValues(*(np.asarray([getattr(p, f) for p in items], dtype=np.float64) for f in ("clsb", "clb", "cls")))


def _outcome(test: Test, request: HypotestRequest | UpperLimitRequest, values: np.ndarray) -> tuple[Outcome, int | None]:
    if request.calctype == "toybased":
        seed = request.seed if request.seed is not None else toys.fresh_seed()
        return _toy_based(test, values, request.ntoys, seed), seed
    return _asymptotic(test, values), None


def hypotest(request: HypotestRequest, limits: Limits) -> dict[str, Any]:
    """CLs, CLs+b and CLb at each POI value (q0: the discovery p-value p0), asymptotic or from
    toys; the expected band (−2σ..+2σ) on request."""
    check_hypotest(request, limits)
    values = np.asarray(poi_values(request), dtype=np.float64)
    test = _prepare(request, limits, values, "poi_values")
    outcome, seed = _outcome(test, request, values)
    toy_based = request.calctype == "toybased"
    out: dict[str, Any] = {
        "poi": test.cm.poi_name,
        "poi_values": values,
        "test_stat": request.test_stat,
        "calctype": request.calctype,
        "optimizer": test.settings.optimizer,
        "cls": outcome.observed.cls,
        "clsb": outcome.observed.clsb,
        "clb": outcome.observed.clb,
        "warnings": outcome.warnings,
    }
    if request.test_stat == "q0":
        out["p0"] = outcome.observed.clsb
    if request.expected:
        out["cls_expected"] = outcome.band.cls
        out["expected_sigmas"] = list(EXPECTED_SIGMAS)
        if request.test_stat == "q0":
            out["p0_expected"] = outcome.band.clsb
    if toy_based:
        assert outcome.uncertainties is not None
        out.update(ntoys=request.ntoys, seed=seed, cls_uncertainty=outcome.uncertainties.cls,
                   clsb_uncertainty=outcome.uncertainties.clsb, clb_uncertainty=outcome.uncertainties.clb)
    return out


def crossing(scan: np.ndarray, cls: np.ndarray, level: float) -> float | None:
    """The first POI value where CLs falls through ``level``, linearly interpolated between the
    grid points around it; None when it never does inside the grid."""
    below = np.flatnonzero(cls < level)
    if below.size == 0 or below[0] == 0:
        return None
    i = below[0]
    x0, x1, y0, y1 = scan[i - 1], scan[i], cls[i - 1], cls[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))


def upper_limit(request: UpperLimitRequest, limits: Limits) -> dict[str, Any]:
    """Observed and expected (−2σ..+2σ) upper limits at CLs = ``level``, interpolated on the scan;
    null (with a warning) where CLs does not cross the level inside it."""
    check_upper_limit(request, limits)
    scan, level = request.scan, request.level
    if not isinstance(scan, list):  # {start, stop, points}
        scan = np.linspace(scan.start, scan.stop, scan.points, dtype=np.float64).tolist()
    grid = np.asarray(scan, dtype=np.float64)
    if grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise InvalidInput(
            "The scan needs at least two strictly increasing POI values.",
            errors=[{"loc": ["body", "scan"], "msg": "at least 2 increasing values", "type": "value_error"}],
        )
    test = _prepare(request, limits, grid, "scan")
    outcome, seed = _outcome(test, request, grid)
    cls, band = outcome.observed.cls, outcome.band.cls
    warnings = list(outcome.warnings)
    limits_found: list[float | None] = []
    for label, curve in [("observed", cls)] + [(f"expected {s:+d}σ", band[:, k]) for k, s in enumerate(EXPECTED_SIGMAS)]:
        found = crossing(grid, curve, level)
        limits_found.append(found)
        if found is not None:
            continue
        if curve[0] < level:
            warnings.append(f"The {label} CLs is already below {level:g} at the scan's start "
                            f"({grid[0]:g}): that limit lies below the scan, so it is null.")
        else:
            warnings.append(f"The {label} CLs stays above {level:g} up to the scan's end "
                            f"({grid[-1]:g}): that limit lies beyond the scan, so it is null; widen it.")
    out: dict[str, Any] = {
        "poi": test.cm.poi_name,
        "level": level,
        "observed": limits_found[0],
        "expected": limits_found[1:],
        "expected_sigmas": list(EXPECTED_SIGMAS),
        "scan": grid,
        "cls": cls,
        "cls_expected": band,
        "test_stat": request.test_stat,
        "calctype": request.calctype,
        "optimizer": test.settings.optimizer,
        "warnings": warnings,
    }
    if request.calctype == "toybased":
        out.update(ntoys=request.ntoys, seed=seed)
    return out
