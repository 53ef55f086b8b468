"""Straight-line fits y = m·x + q: checked input points, the closed-form least-squares fit, and
the result both fitting methods share (uncertainties, χ², covariance conventions).

Conventions, for both methods:

- With per-point uncertainties σᵢ the weights are wᵢ = 1/σᵢ², χ² = Σ wᵢ (yᵢ - m·xᵢ - q)² and the
  covariance of (m, q) is (AᵀWA)⁻¹ (A has rows [xᵢ, 1]): σᵢ are taken as absolute.
- Without σ every wᵢ = 1, χ² is the residual sum of squares, and the covariance is (AᵀA)⁻¹ scaled
  by the residual variance χ²/ndf (ndf = N - 2) — ``covariance_scaled`` says which was done.
  This is ``numpy.polyfit(x, y, 1, w=1/σ, cov="unscaled")`` with σ and ``cov=True`` without.

Numerics: x is centered on its weighted mean x̄ (and, for gradient descent, divided by its weighted
spread s) before anything is summed, so slope and intercept decouple and nothing cancels
catastrophically when |x̄| is large compared with the spread of x; results are mapped back with
:class:`Standardization`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput, LimitExceeded

LEAST_SQUARES = "least_squares"
GRADIENT_DESCENT = "gradient_descent"


def _invalid(detail: str, loc: list[Any], kind: str) -> InvalidInput:
    return InvalidInput(detail, errors=[{"loc": loc, "msg": detail, "type": kind}])


@dataclass(frozen=True)
class LinePoints:
    """Checked data: 1-D float64 arrays of equal length N ≥ 2, finite, σ > 0, x not all equal."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """wᵢ = 1/σᵢ², or ones without σ."""
        return np.ones_like(self.x) if self.sigma is None else 1.0 / self.sigma**2


def line_points(
    x: Any, y: Any, sigma: Any = None, *, max_points: int, where: tuple[str | int, ...] = ("body",)
) -> LinePoints:
    """Check and convert the data; 413 over ``max_points``, 422 naming the first bad value.

    ``where`` prefixes each error location, e.g. ``["body", "x", 17]`` for x[17].
    """
    arrays = {"x": x, "y": y} | ({} if sigma is None else {"sigma": sigma})
    checked: dict[str, np.ndarray] = {}
    for name, values in arrays.items():
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _invalid(f"{name} must be a list of numbers ({exc}).", [*where, name], "type") from None
        if arr.ndim != 1:
            raise _invalid(f"{name} must be one-dimensional; it has shape {arr.shape}.",
                           [*where, name], "shape")
        checked[name] = arr
    n = checked["x"].shape[0]
    if n > max_points:
        raise LimitExceeded(f"The fit has {n} points; at most {max_points} are accepted "
                            "(limits.max_fit_points).", limit="max_fit_points", maximum=max_points, value=n)
    for name, arr in checked.items():
        if arr.shape[0] != n:
            raise _invalid(f"{name} has {arr.shape[0]} values but x has {n}; they must be equally long.",
                           [*where, name], "length")
    if n < 2:
        raise _invalid(f"A line fit needs at least 2 points; {n} given.", [*where, "x"], "too_few_points")
    for name, arr in checked.items():
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            i = int(bad[0])
            raise _invalid(f"{name}[{i}] is {arr[i]}; every value must be finite "
                           f"({bad.size} non-finite in {name}).", [*where, name, i], "finite")
    if "sigma" in checked:
        s = checked["sigma"]
        bad = np.flatnonzero(s <= 0)
        if bad.size:
            i = int(bad[0])
            raise _invalid(f"sigma[{i}] is {s[i]}; uncertainties must be > 0.", [*where, "sigma", i],
                           "greater_than")
        with np.errstate(over="ignore", divide="ignore"):
            bad = np.flatnonzero(~np.isfinite(1.0 / s**2))
        if bad.size:
            i = int(bad[0])
            raise _invalid(f"sigma[{i}] is {s[i]}: its weight 1/sigma² overflows float64.",
                           [*where, "sigma", i], "too_small")
    xs = checked["x"]
    if xs.min() == xs.max():
        raise _invalid(f"All x are equal ({xs[0]}): the slope is undetermined.", [*where, "x"], "degenerate")
    points = LinePoints(checked["x"], checked["y"], checked.get("sigma"))
    _check_range(points, where)
    return points


def weighted_sum(w: np.ndarray, values: np.ndarray) -> float:
    """Σ wᵢ·vᵢ by numpy's pairwise summation: error ~ log N ulps, where ``w @ v`` (a BLAS dot,
    summed in order) loses ~√N — for 10^6 points far from 0 that was 5e-7 in the intercept."""
    return float(np.sum(w * values))


def _check_range(points: LinePoints, where: tuple[str | int, ...]) -> None:
    """Refuse data whose weighted sums of squares leave float64 (e.g. x spanning ±1e300)."""
    with np.errstate(all="ignore"):
        w = points.weights
        sum_w = w.sum()
        spreads = []
        for values in (points.x, points.y):
            centered = values - weighted_sum(w, values) / sum_w
            spreads.append(weighted_sum(w, centered * centered))
    if not (np.isfinite(sum_w) and np.isfinite(spreads).all() and spreads[0] > 0):
        raise _invalid("The weighted sums of squares of these values over- or underflow float64; "
                       "rescale x, y or sigma to a moderate range.", [*where], "range")


@dataclass(frozen=True)
class Standardization:
    """x' = (x - center) / scale, with the weighted mean and weighted spread of x.

    A line a·x' + c in these coordinates is m·x + q with m = a/scale, q = c - a·center/scale.
    """

    center: float
    scale: float

    @classmethod
    def of(cls, points: LinePoints) -> Standardization:
        w = points.weights
        center = weighted_sum(w, points.x) / w.sum()
        u = points.x - center
        return cls(center, float(np.sqrt(weighted_sum(w, u * u) / w.sum())))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (x - self.center) / self.scale

    def to_line(self, a: Any, c: Any) -> tuple[Any, Any]:
        """(a, c) in standardized coordinates → (m, q); works on arrays (histories) too."""
        return a / self.scale, c - a * self.center / self.scale

    def from_line(self, m: float, q: float) -> tuple[float, float]:
        return m * self.scale, q + m * self.center

    def covariance_to_line(self, cov_ac: np.ndarray) -> np.ndarray:
        """Propagate a covariance of (a, c) to (m, q) through the linear map J: J C Jᵀ."""
        jac = np.array([[1.0 / self.scale, 0.0], [-self.center / self.scale, 1.0]])
        return jac @ cov_ac @ jac.T


@dataclass(frozen=True)
class LineFit:
    """A fitted line with its uncertainties; ``history`` per epoch for gradient descent."""

    m: float
    q: float
    covariance: np.ndarray
    covariance_scaled: bool
    chi2: float
    ndf: int
    method: str
    backend: str
    history: dict[str, np.ndarray] | None = None

    @property
    def uncertainty(self) -> dict[str, float]:
        return {"m": float(np.sqrt(self.covariance[0, 0])), "q": float(np.sqrt(self.covariance[1, 1]))}

    @property
    def correlation(self) -> np.ndarray:
        err = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.covariance / np.outer(err, err)

    @property
    def diverged(self) -> bool:
        return not (np.isfinite(self.m) and np.isfinite(self.q))


def chi_square(points: LinePoints, m: float, q: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        residuals = points.y - (m * points.x + q)
        return weighted_sum(points.weights, residuals * residuals)


def line_fit(points: LinePoints, m: float, q: float, unscaled_covariance: np.ndarray, *,
             method: str, backend: str, history: dict[str, np.ndarray] | None = None) -> LineFit:
    """Assemble the result: χ², ndf, and the covariance scaled by χ²/ndf when σ was not given.

    With N = 2 and no σ the residual variance is unknown (ndf = 0): the covariance is NaN.
    """
    chi2 = chi_square(points, m, q)
    ndf = points.n - 2
    scaled = points.sigma is None
    covariance = np.asarray(unscaled_covariance, dtype=np.float64)
    if scaled:
        covariance = covariance * (chi2 / ndf if ndf > 0 else np.nan)
    return LineFit(float(m), float(q), covariance, scaled, chi2, ndf, method, backend, history)


def least_squares(points: LinePoints) -> LineFit:
    """The exact weighted least-squares line, summed about the weighted mean of x.

    With u = x - x̄ (Σwu = 0) the normal equations decouple: m = Σwu(y-ȳ)/Σwu²,
    c = ȳ is the line's value at x̄ with var(m) = 1/Σwu², var(c) = 1/Σw, cov(m, c) = 0;
    q = c - m·x̄ follows by :meth:`Standardization.covariance_to_line` (scale 1).
    """
    w = points.weights
    with np.errstate(all="ignore"):  # line_points checked the sums; 1/Σwu² may still overflow
        sum_w = w.sum()
        center = Standardization(weighted_sum(w, points.x) / sum_w, 1.0)
        u = points.x - center.center
        y_mean = weighted_sum(w, points.y) / sum_w
        sum_wuu = weighted_sum(w, u * u)
        m, q = center.to_line(weighted_sum(w, u * (points.y - y_mean)) / sum_wuu, y_mean)
        covariance = center.covariance_to_line(np.diag([1.0 / sum_wuu, 1.0 / sum_w]))
        fit = line_fit(points, m, q, covariance, method=LEAST_SQUARES, backend="numpy")
    if not np.isfinite([fit.m, fit.q, fit.chi2, *covariance.ravel()]).all():
        raise _invalid("The sums of this fit over- or underflow float64; rescale x, y or sigma "
                       "to a moderate range.", ["body"], "range")
    return fit


@dataclass(frozen=True)
class DescentOptions:
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    epochs: int = 20
    batch_size: int = 100
    initial_m: float = 0.0
    initial_q: float = 0.0
    shuffle: bool = True
    seed: int = 0
    standardize: bool = True
