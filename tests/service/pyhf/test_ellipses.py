"""Ellipse geometry, checked against the defining quadratic form and a separate eigen-solver.

The seed notebook took *rows* of the eigenvector matrix and swapped width and height; for a
correlated pair whose major axis is not along an axis that draws the wrong ellipse. These tests
would catch both mistakes: boundary points must satisfy (p − c)ᵀ C⁻¹ (p − c) = Δχ², and the major
axis must point where C stretches most.
"""

from __future__ import annotations

import numpy as np
import pytest

from labcrunch_service.pyhf.ellipses import delta_chi2, ellipse_from_covariance

CORRELATED = np.array([[2.0, 1.2], [1.2, 1.0]])  # major axis ≈ 31.7° from x, not along an axis
ANTI = np.array([[1.0, -0.6], [-0.6, 0.5]])  # negative correlation: major axis below the x axis


def boundary(e, n=64):
    """Points on the ellipse, built from center, semi-axes and angle alone."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    a, b = e.semi_axes
    theta = np.radians(e.angle_deg)
    local = np.stack([a * np.cos(t), b * np.sin(t)])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return (rot @ local).T + np.asarray(e.center)


@pytest.mark.parametrize("cov", [CORRELATED, ANTI, np.diag([0.25, 4.0]), np.diag([3.0, 0.5])])
@pytest.mark.parametrize("region", ["joint", "projection"])
def test_boundary_lies_on_the_delta_chi2_contour(cov, region):
    e = ellipse_from_covariance(("a", "b"), (1.5, -2.0), cov, 0.6827, region)
    d = boundary(e) - np.asarray(e.center)
    q = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    np.testing.assert_allclose(q, e.delta_chi2, rtol=1e-10)
    assert e.semi_axes[0] >= e.semi_axes[1]
    assert -90.0 < e.angle_deg <= 90.0


def test_correlated_pair_major_axis_against_eig():
    e = ellipse_from_covariance(("x", "y"), (0.0, 0.0), CORRELATED, 0.9545, "joint")
    # Independent: the general eig (not eigh), closed-form angle of a 2x2 covariance.
    values, vectors = np.linalg.eig(CORRELATED)
    major = vectors[:, np.argmax(values)]
    closed_form = 0.5 * np.degrees(np.arctan2(2 * 1.2, 2.0 - 1.0))
    assert e.angle_deg == pytest.approx(closed_form, abs=1e-9)
    assert e.angle_deg == pytest.approx(np.degrees(np.arctan(major[1] / major[0])), abs=1e-9)
    assert 20 < e.angle_deg < 45  # really not along an axis
    np.testing.assert_allclose(e.semi_axes, np.sqrt(6.180 * np.sort(values)[::-1]), rtol=1e-3)
    # The seed's mistake (rows, not columns) gives a different direction for this matrix.
    wrong = vectors[np.argmax(values)]
    assert abs(np.degrees(np.arctan(wrong[0] / wrong[1])) - e.angle_deg) > 10


def test_negative_correlation_tilts_down():
    e = ellipse_from_covariance(("x", "y"), (0.0, 0.0), ANTI, 0.6827, "joint")
    assert -90 < e.angle_deg < 0


def test_axis_aligned_covariances():
    tall = ellipse_from_covariance(("x", "y"), (0, 0), np.diag([0.25, 4.0]), 0.6827, "projection")
    assert abs(tall.angle_deg) == pytest.approx(90.0)
    assert tall.semi_axes == pytest.approx((2.0 * np.sqrt(tall.delta_chi2), 0.5 * np.sqrt(tall.delta_chi2)))
    wide = ellipse_from_covariance(("x", "y"), (0, 0), np.diag([3.0, 0.5]), 0.6827, "projection")
    assert wide.angle_deg == pytest.approx(0.0, abs=1e-12)


def test_delta_chi2_thresholds():
    # Closed forms: 2 dof, P(χ² ≤ k) = 1 − exp(−k/2) ⇒ k = −2 ln(1 − CL); 1 dof: k = z², CL = erf(z/√2).
    assert delta_chi2(0.6827, "joint") == pytest.approx(-2 * np.log(1 - 0.6827), rel=1e-12)
    assert delta_chi2(0.9545, "joint") == pytest.approx(6.18, abs=5e-3)
    assert delta_chi2(0.6827, "projection") == pytest.approx(1.0, abs=1e-3)
    assert delta_chi2(0.9545, "projection") == pytest.approx(4.0, abs=2e-3)
