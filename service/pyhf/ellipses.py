"""Confidence ellipses from a covariance matrix (plain numpy, no JAX).

For a Gaussian approximation with 2x2 covariance ``C`` of parameters (x, y), the region
``Δχ² = (p - p̂)ᵀ C⁻¹ (p - p̂) <= k`` is an ellipse whose semi-axes are ``sqrt(k λᵢ)`` along the
eigenvectors (the *columns* of ``eigh``'s second output) of ``C``.  The seed notebook took rows of
the eigenvector matrix and swapped width and height; here the major axis follows the eigenvector
of the largest eigenvalue, and its angle is measured from the x axis, anticlockwise.

Which ``k``:
- ``joint``: the region that holds both parameters together with the given probability,
  ``k = χ²₂⁻¹(CL)`` (2.30 for 68.27 %, 6.18 for 95.45 %).
- ``projection``: ``k = χ²₁⁻¹(CL)`` (1 for 68.27 %, 4 for 95.45 %): the ellipse whose shadow on
  each axis is that parameter's own 1-D interval (±1σ, ±2σ).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import chi2

Region = Literal["joint", "projection"]


@dataclass(frozen=True)
class Ellipse:
    parameters: tuple[str, str]
    center: tuple[float, float]
    semi_axes: tuple[float, float]  # (major, minor)
    angle_deg: float  # of the major axis from the x axis, anticlockwise, in (-90, 90]
    confidence_level: float
    delta_chi2: float
    region: Region

    def as_dict(self) -> dict:
        return {
            "parameters": list(self.parameters),
            "center": list(self.center),
            "semi_axes": list(self.semi_axes),
            "angle_deg": self.angle_deg,
            "confidence_level": self.confidence_level,
            "delta_chi2": self.delta_chi2,
            "region": self.region,
        }


@functools.lru_cache(maxsize=256)  # scipy's ppf costs ~0.3 ms a call; a fit draws up to 8 pairs x 8 levels
def delta_chi2(confidence_level: float, region: Region) -> float:
    """The Δχ² threshold: 2 degrees of freedom for the joint region, 1 for the projection."""
    return float(chi2.ppf(confidence_level, 2 if region == "joint" else 1))


def ellipse_from_covariance(
    names: tuple[str, str],
    center: tuple[float, float],
    covariance: np.ndarray,
    confidence_level: float,
    region: Region = "joint",
) -> Ellipse:
    cov = np.asarray(covariance, dtype=np.float64).reshape(2, 2)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending; eigenvectors are columns
    k = delta_chi2(confidence_level, region)
    major = eigenvectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    # A direction and its opposite are the same axis: fold the angle into (-90, 90].
    if angle <= -90.0:
        angle += 180.0
    elif angle > 90.0:
        angle -= 180.0
    semi = np.sqrt(k * np.clip(eigenvalues, 0.0, None))
    return Ellipse(
        parameters=names,
        center=(float(center[0]), float(center[1])),
        semi_axes=(float(semi[1]), float(semi[0])),
        angle_deg=angle,
        confidence_level=float(confidence_level),
        delta_chi2=k,
        region=region,
    )
