"""p-values from profile-likelihood test statistics: pyhf 0.7.6's asymptotic and toy-based
calculators, as plain numpy (the fits that give the statistics are done elsewhere).

Test statistics (pyhf's ``qmu``, ``qmu_tilde``, ``q0``): ``t = max(−2 ln L(μ, θ̂̂) + 2 ln L(μ̂, θ̂), 0)``,
set to 0 when μ̂ > μ (``q``, ``qtilde``: an excess does not count against μ) or when μ̂ < 0
(``q0``, which tests μ = 0). ``q`` and ``qtilde`` differ only in their asymptotic distribution
(and in the POI's lower bound, which the request's ``par_bounds`` set).

Asymptotics (Cowan, Cranmer, Gross, Vitells 2011), with ``q_A`` the statistic on the Asimov data of
μ = 0 (μ = 1 for ``q0``), in pyhf's parametrisation by ``√q``: CLs+b = Φ(−(t + √q_A)), CLb = Φ(−t)
with ``t = √q − √q_A`` (``qtilde`` above ``q_A``: ``(q − q_A)/(2√q_A)``); the expected band puts
``t`` at +2, +1, 0, −1, −2 (ascending CLs, the −2σ..+2σ band).

Toys: CLs+b and CLb are the fractions of s+b and of b pseudo-experiments whose statistic is at
least the observed one (pyhf's ``EmpiricalDistribution``); the expected band takes the 2.3, 15.9,
50, 84.1 and 97.7 % percentiles (linear interpolation) of the p-values at every b toy's statistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import ndtr

TestStatistic = Literal["qtilde", "q", "q0"]

#: Labels of the expected band's columns: −2σ .. +2σ (ascending CLs).
EXPECTED_SIGMAS = (-2, -1, 0, 1, 2)
#: Where the asymptotic band puts pyhf's statistic t for those columns.
_BAND_T = np.array([2.0, 1.0, 0.0, -1.0, -2.0])
#: pyhf's percentiles of the toy p-values for those columns: 100·Φ(−2), ..., 100·Φ(2).
NORMAL_PERCENTILES = np.array([2.27501319, 15.86552539, 50.0, 84.13447461, 97.72498681])


def asimov_poi(test_stat: TestStatistic) -> float:
    """The POI value whose Asimov data give q_A: 0, or 1 for the discovery statistic."""
    return 1.0 if test_stat == "q0" else 0.0


def test_statistic(test_stat: TestStatistic, poi_value: np.ndarray | float, fixed_twice_nll: np.ndarray,
                   free_twice_nll: np.ndarray, muhat: np.ndarray) -> np.ndarray:
    """q, qtilde or q0 from the fixed-POI and free fits' −2 ln L and the free fit's μ̂."""
    t = np.clip(np.asarray(fixed_twice_nll, dtype=np.float64) - np.asarray(free_twice_nll, dtype=np.float64),
                0.0, None)
    if test_stat == "q0":
        return np.where(np.asarray(muhat) < 0, 0.0, t)
    return np.where(np.asarray(muhat) > np.asarray(poi_value), 0.0, t)


@dataclass(frozen=True)
class PValues:
    """CLs+b, CLb and CLs, one value per POI value (arrays of the same shape)."""

    clsb: np.ndarray
    clb: np.ndarray
    cls: np.ndarray


@dataclass(frozen=True)
class Band:
    """The expected p-values, one row per POI value, columns at EXPECTED_SIGMAS."""

    clsb: np.ndarray
    clb: np.ndarray
    cls: np.ndarray


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)


def asymptotic(test_stat: TestStatistic, q: np.ndarray, q_asimov: np.ndarray) -> tuple[PValues, Band]:
    """Observed and expected p-values from q (data) and q_A (Asimov data), per POI value."""
    q, q_asimov = np.asarray(q, dtype=np.float64), np.asarray(q_asimov, dtype=np.float64)
    root, root_asimov = np.sqrt(q), np.sqrt(q_asimov)
    t = root - root_asimov
    if test_stat == "qtilde":
        t = np.where(root <= root_asimov, t, _ratio(q - q_asimov, 2.0 * root_asimov))
    clsb, clb = ndtr(-(t + root_asimov)), ndtr(-t)
    observed = PValues(clsb, clb, _ratio(clsb, clb))
    band_clsb = ndtr(-(_BAND_T[None, :] + root_asimov[..., None]))
    band_clb = np.broadcast_to(ndtr(-_BAND_T), band_clsb.shape)
    return observed, Band(band_clsb, band_clb, _ratio(band_clsb, band_clb))


def _tail_fractions(samples: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, the fraction of samples >= it (NaN samples count as below everything)."""
    ordered = np.sort(np.where(np.isnan(samples), -np.inf, samples))
    return (len(ordered) - np.searchsorted(ordered, values, side="left")) / len(ordered)


def empirical(observed: float, signal_plus_background: np.ndarray, background: np.ndarray) -> PValues:
    """CLs+b, CLb, CLs at one POI value from its toys' statistics."""
    value = np.asarray([observed], dtype=np.float64)
    clsb = _tail_fractions(signal_plus_background, value)[0]
    clb = _tail_fractions(background, value)[0]
    return PValues(np.float64(clsb), np.float64(clb), _ratio(clsb, clb))


def empirical_uncertainties(p: PValues, toys: int) -> PValues:
    """Monte-Carlo (binomial) uncertainties of toy p-values: sqrt(p(1−p)/N) for CLs+b and CLb
    (independent samples), propagated to their ratio."""
    sigma_clsb = np.sqrt(p.clsb * (1 - p.clsb) / toys)
    sigma_clb = np.sqrt(p.clb * (1 - p.clb) / toys)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_cls = np.abs(p.cls) * np.sqrt(_ratio(sigma_clsb, p.clsb) ** 2 + _ratio(sigma_clb, p.clb) ** 2)
    sigma_cls = np.where(p.clsb == 0, _ratio(sigma_clsb, p.clb), sigma_cls)
    return PValues(sigma_clsb, sigma_clb, sigma_cls)


def empirical_band(signal_plus_background: np.ndarray, background: np.ndarray) -> Band:
    """The expected p-values at one POI value: percentiles over the b toys' statistics."""
    stats = np.asarray(background, dtype=np.float64)
    clsb = _tail_fractions(signal_plus_background, stats)
    clb = _tail_fractions(background, stats)
    cls = _ratio(clsb, clb)
    columns = [np.percentile(values, NORMAL_PERCENTILES, method="linear") for values in (clsb, clb, cls)]
    return Band(*columns)
