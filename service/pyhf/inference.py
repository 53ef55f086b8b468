"""Asymptotic hypothesis tests (CLs) and upper limits on the POI, with pyhf.

Only asymptotic calculators: pyhf 0.7.6's toy-based paths break on numpy >= 2.4. Upper limits
come from a grid of POI values (pyhf's ``linear_grid_scan``): the root-finding path (toms748)
does not work on the JAX backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np
import pyhf

from labcrunch_service.errors import InvalidInput
from labcrunch_service.progress import check_deadline
from labcrunch_service.pyhf.checks import check_hypotest, check_upper_limit, poi_values
from labcrunch_service.pyhf.fit import FitSettings, refusing_failed_fits
from labcrunch_service.pyhf.models import (
    CompiledModel,
    fixed_mask,
    load,
    parameter_bounds,
    parameter_values,
)
from labcrunch_service.settings import Limits

if TYPE_CHECKING:
    from labcrunch_service.pyhf.schemas import HypotestRequest, UpperLimitRequest

# The order of pyhf's expected set: the band from −2σ to +2σ.
EXPECTED_SIGMAS = (-2, -1, 0, 1, 2)


def _pyhf_options(cm: CompiledModel, settings: FitSettings, poi_values: np.ndarray, where: str) -> dict[str, Any]:
    """init_pars, par_bounds and fixed_params as pyhf wants them; 422 for an unusable POI."""
    poi_index = cm.model.config.poi_index
    if poi_index is None:
        raise InvalidInput(
            "The model has no parameter of interest; a hypothesis test needs one (the "
            "measurement's 'poi').",
            errors=[{"loc": ["body", "model"], "msg": "model has no POI", "type": "value_error"}],
        )
    fixed = fixed_mask(cm, settings.fixed_params)
    if fixed[poi_index]:
        raise InvalidInput(
            f"The POI {cm.poi_name!r} is fixed; the test fixes it at each tested value itself.",
            errors=[{"loc": ["body", "fixed_params"], "msg": "the POI cannot be fixed", "type": "value_error"}],
        )
    bounds = parameter_bounds(cm, settings.par_bounds)
    low, high = bounds[poi_index]
    outside = (poi_values < low) | (poi_values > high)
    if outside.any():
        raise InvalidInput(
            f"{where} holds POI values outside the POI's bounds [{low:g}, {high:g}] "
            f"(e.g. {poi_values[outside][0]:g}).",
            errors=[{"loc": ["body", where], "msg": f"POI values must lie in [{low:g}, {high:g}]",
                     "type": "value_error"}],
        )
    return {
        "init_pars": parameter_values(cm, settings.init_pars, loc="init_pars").tolist(),
        "par_bounds": bounds.tolist(),
        "fixed_params": fixed.tolist(),
    }


def hypotest(request: HypotestRequest, limits: Limits) -> dict[str, Any]:
    """CLs, CLs+b and CLb at each POI value; the expected CLs band (−2σ..+2σ) on request."""
    check_hypotest(request, limits)
    cm, data = load(request, limits)
    test_stat, expected = request.test_stat, request.expected
    values = np.asarray(poi_values(request), dtype=np.float64)
    options = _pyhf_options(cm, FitSettings.of(request), values, "poi_values")
    tensor = jnp.asarray(data, dtype=jnp.float64)
    cls, clsb, clb, band = [], [], [], []
    for mu in values:
        check_deadline()
        with refusing_failed_fits(f"fit for the test at {cm.poi_name} = {mu:g}"):
            result = pyhf.infer.hypotest(
                float(mu), tensor, cm.model, calctype="asymptotics", test_stat=test_stat,
                return_tail_probs=True, return_expected_set=expected, **options,
            )
        cls.append(float(result[0]))
        clsb.append(float(result[1][0]))
        clb.append(float(result[1][1]))
        if expected:
            band.append([float(v) for v in result[2]])
    out: dict[str, Any] = {
        "poi": cm.poi_name,
        "poi_values": values,
        "test_stat": test_stat,
        "cls": np.asarray(cls),
        "clsb": np.asarray(clsb),
        "clb": np.asarray(clb),
    }
    if expected:
        out["cls_expected"] = np.asarray(band)
        out["expected_sigmas"] = list(EXPECTED_SIGMAS)
    return out


def upper_limit(request: UpperLimitRequest, limits: Limits) -> dict[str, Any]:
    """Observed and expected (−2σ..+2σ) upper limits at CLs = ``level``, interpolated on the scan."""
    check_upper_limit(request, limits)
    scan, level, test_stat = request.scan, request.level, request.test_stat
    if not isinstance(scan, list):  # {start, stop, points}
        scan = np.linspace(scan.start, scan.stop, scan.points, dtype=np.float64).tolist()
    cm, data = load(request, limits)
    scan_grid = np.asarray(scan, dtype=np.float64)
    if scan_grid.size < 2 or np.any(np.diff(scan_grid) <= 0):
        raise InvalidInput(
            "The scan needs at least two strictly increasing POI values.",
            errors=[{"loc": ["body", "scan"], "msg": "at least 2 increasing values", "type": "value_error"}],
        )
    options = _pyhf_options(cm, FitSettings.of(request), scan_grid, "scan")
    check_deadline()
    with refusing_failed_fits("fit for the limit scan"):
        observed, expected, (_, results) = pyhf.infer.intervals.upper_limits.upper_limit(
            jnp.asarray(data, dtype=jnp.float64), cm.model, scan=scan_grid, level=level,
            return_results=True, test_stat=test_stat, **options,
        )
    cls = np.asarray([float(r[0]) for r in results])
    band = np.asarray([[float(v) for v in r[1]] for r in results])
    warnings = []
    for label, curve in [("observed", cls)] + [(f"expected {s:+d}σ", band[:, k]) for k, s in enumerate(EXPECTED_SIGMAS)]:
        if curve[-1] > level:
            warnings.append(f"The {label} CLs stays above {level:g} up to the scan's end "
                            f"({scan_grid[-1]:g}): that limit lies beyond the scan; widen it.")
        elif curve[0] < level:
            warnings.append(f"The {label} CLs is already below {level:g} at the scan's start "
                            f"({scan_grid[0]:g}): that limit lies below the scan.")
    return {
        "poi": cm.poi_name,
        "level": level,
        "observed": float(observed),
        "expected": np.asarray([float(v) for v in expected]),
        "expected_sigmas": list(EXPECTED_SIGMAS),
        "scan": scan_grid,
        "cls": cls,
        "cls_expected": band,
        "test_stat": test_stat,
        "warnings": warnings,
    }
