"""labcrunch.pyhf_* against the in-process app: numpy results, from_json, errors, and the plot()
helpers under Agg."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
import sys  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyhf  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

from labcrunch import ValidationError  # noqa: E402
from labcrunch import plot as lcplot  # noqa: E402
from labcrunch.pyhf import (  # noqa: E402
    Ellipse,
    HypotestResult,
    PyhfBatchFitResult,
    PyhfFitResult,
    PyhfScanResult,
    UpperLimitResult,
    interpolation_codes,
    simple_model,
    workspace_model,
)
from tests.helpers import pyhf_oracle as oracle  # noqa: E402

SEED = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])


@pytest.fixture(scope="module")
def seed_fit(lc):
    return lc.pyhf_fit(SEED)


def test_simple_model_builder_matches_the_api_form():
    assert SEED == oracle.SEED_MODEL


def test_fit_returns_numpy(seed_fit):
    assert isinstance(seed_fit, PyhfFitResult)
    assert isinstance(seed_fit.covariance, np.ndarray) and seed_fit.covariance.shape == (2, 2)
    np.testing.assert_allclose(seed_fit.covariance, [[1.09, -0.245], [-0.245, 0.1225]], atol=1e-6)
    mu, sigma = seed_fit.value("mu")
    assert mu == pytest.approx(1.0, abs=1e-6) and sigma == pytest.approx(np.sqrt(1.09), rel=1e-6)
    assert seed_fit.ellipses[0].parameters == ("mu", "uncorr_bkguncrt[0]")


def test_seed_figure(lc, seed_fit):
    """Colour map, gradient arrows, best fit and ellipses; the drawn ellipse's vertices lie on the
    Δχ² contour of the covariance (checked in data coordinates, independent of our geometry)."""
    scan = lc.pyhf_scan(SEED, ("mu", 0.5, 1.5, 41), ("uncorr_bkguncrt[0]", 0.5, 1.5, 41), gradient_points=(11, 11))
    assert isinstance(scan, PyhfScanResult)
    assert scan.values.shape == (41, 41) and scan.d_dx.shape == (11, 11)
    # The log-likelihood peaks at the best fit (1, 1), the grid's centre.
    assert np.unravel_index(np.argmax(scan.values), scan.values.shape) == (20, 20)
    assert scan.center == "bestfit"
    ax = scan.plot(fit=seed_fit)
    fig = ax.figure
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    assert any(isinstance(c, Quiver) for c in ax.collections)
    patches = [p for p in ax.patches if isinstance(p, matplotlib.patches.Ellipse)]
    assert len(patches) == 2
    inverse = np.linalg.inv(seed_fit.covariance)
    for patch, ellipse in zip(patches, seed_fit.ellipses, strict=True):
        # The drawn path is cubic Bézier segments; their end points lie exactly on the ellipse.
        ends = [segment.control_points[-1] for segment, _ in patch.get_path().iter_bezier()]
        vertices = patch.get_patch_transform().transform(np.asarray(ends))
        assert len(vertices) >= 8
        d = vertices - np.array([1.0, 1.0])
        q = np.einsum("ni,ij,nj->n", d, inverse, d)
        np.testing.assert_allclose(q, ellipse.delta_chi2, rtol=1e-6)
    plt.close(fig)


def test_scan_as_npz_equals_json(lc):
    axes = (("mu", 0.5, 1.5, 7), ("uncorr_bkguncrt[0]", 0.5, 1.5, 5))
    as_json = lc.pyhf_scan(SEED, *axes, gradient_points=(3, 2), binary=False)
    as_npz = lc.pyhf_scan(SEED, *axes, gradient_points=(3, 2), binary=True)
    for field in ("x", "y", "values", "gradient_x", "gradient_y", "d_dx", "d_dy", "base"):
        np.testing.assert_array_equal(getattr(as_npz, field), getattr(as_json, field))
    assert as_npz.parameters == as_json.parameters == ("mu", "uncorr_bkguncrt[0]")
    assert as_npz.base_parameters == as_json.base_parameters
    assert (as_npz.quantity, as_npz.profiled, as_npz.warnings) == ("logpdf", False, [])
    assert as_npz.center == as_json.center == "bestfit"


def test_correlation_plot(seed_fit):
    fig, (left, right) = plt.subplots(1, 2)
    assert seed_fit.plot_correlation(ax=right) is right and not left.images
    np.testing.assert_allclose(right.images[0].get_array(), seed_fit.correlation)
    assert lcplot.correlation_matrix(seed_fit, left) is left
    plt.close(fig)


def test_ellipse_patch_and_missing_matplotlib(seed_fit, monkeypatch):
    ellipse = seed_fit.ellipses[0]
    patch = ellipse.patch(edgecolor="k")
    assert patch.center == ellipse.center and patch.width == 2 * ellipse.semi_axes[0]
    assert not patch.fill
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for draw in (ellipse.patch, seed_fit.plot_correlation):
        with pytest.raises(ImportError, match=r"pip install 'labcrunch\[plot\]'"):
            draw()


def test_from_json_reads_center_and_the_older_centre(api, seed_fit):
    """pyhf answers spell ``center``; servers before the rename wrote ``centre``: both read."""
    raw = api.post("/v1/pyhf/fit", json={"model": SEED}).json()
    assert len({"center", "centre"} & set(raw["ellipses"][0])) == 1  # one spelling per server
    # This answer's own covariance: a model's first answers (stepwise path, finite-difference
    # Hessian) and later ones (compiled program, exact Hessian) may differ by ~1e-12.
    covariance = PyhfFitResult.from_json(raw).covariance
    np.testing.assert_allclose(covariance, seed_fit.covariance, rtol=1e-9)
    for key in ("center", "centre"):
        body = json.loads(json.dumps(raw))
        for e in body["ellipses"]:
            e[key] = e.pop("center", None) or e.pop("centre")
        fit = PyhfFitResult.from_json(body)
        assert [e.center for e in fit.ellipses] == [tuple(e[key]) for e in body["ellipses"]]
        np.testing.assert_array_equal(fit.covariance, covariance)
    ellipse = Ellipse.from_json({"parameters": ["a", "b"], "centre": [1.0, 2.0], "semi_axes": [3, 1],
                                 "angle_deg": 30.0, "confidence_level": 0.6827,
                                 "delta_chi2": 2.3, "region": "joint"})
    assert ellipse.center == (1.0, 2.0) and ellipse.semi_axes == (3.0, 1.0)

    body = {"model": SEED, "x": {"name": "mu", "low": 0.5, "high": 1.5, "points": 3},
            "y": {"name": "uncorr_bkguncrt[0]", "low": 0.5, "high": 1.5, "points": 3},
            "gradient_points": [2, 2], "at": {"mu": 1.0, "uncorr_bkguncrt[0]": 1.0}}
    raw = api.post("/v1/pyhf/scan", json=body).json()
    for key in ("center", "centre"):
        renamed = {k: v for k, v in raw.items() if k not in ("center", "centre")}
        renamed[key] = raw.get("center", raw.get("centre"))
        assert PyhfScanResult.from_json(renamed).center == "given"


def test_hypotest_and_upper_limit(lc):
    model, data = oracle.seed()
    result = lc.pyhf_hypotest(SEED, [1.0, 2.0], expected=True)
    assert isinstance(result, HypotestResult) and result.cls_expected.shape == (2, 5)
    expected = [float(pyhf.infer.hypotest(mu, data, model)) for mu in (1.0, 2.0)]
    np.testing.assert_allclose(result.cls, expected, rtol=1e-5)

    limit = lc.pyhf_upper_limit(SEED, (0.0, 5.0, 21))
    assert isinstance(limit, UpperLimitResult)
    assert limit.scan.shape == (21,) and limit.cls_expected.shape == (21, 5)
    assert 0.0 < limit.observed < 5.0 and np.all(np.diff(limit.expected) > 0)
    ax = limit.plot()
    assert ax.get_ylabel() == "CLs"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), limit.cls)
    plt.close(ax.figure)


def test_correlated_background_with_main_bin_counts(lc):
    model = simple_model(signal=[3.0, 4.0], bkg=[10.0, 12.0], bkg_up=[11.0, 13.5], bkg_down=[9.0, 10.8])
    result = lc.pyhf_fit(model, [14.0, 15.0])
    oracle_model = pyhf.simplemodels.correlated_background([3.0, 4.0], [10.0, 12.0], [11.0, 13.5], [9.0, 10.8])
    data = jnp.asarray([14.0, 15.0] + oracle_model.config.auxdata, dtype=jnp.float64)
    bestfit = pyhf.infer.mle.fit(data, oracle_model)
    assert result.parameters == oracle_model.config.par_names
    np.testing.assert_allclose(result.bestfit, bestfit, rtol=1e-4, atol=1e-5)


def test_errors_raise_client_exceptions(lc):
    with pytest.raises(ValidationError) as info:
        lc.pyhf_fit(SEED, data=[1.0, 2.0, 3.0])
    assert "expects 1 main-bin counts" in str(info.value)


def test_batch_fit_discovery_toys_and_a_limit_outside_the_scan(lc):
    fits = lc.pyhf_fit_batch(SEED, np.array([[15.0], [18.0], [3.0]]))
    assert isinstance(fits, PyhfBatchFitResult) and fits.bestfit.shape == (3, 2) and fits.converged.all()
    np.testing.assert_allclose(fits.bestfit[:2, 0], [1.0, 1.6], atol=1e-9)  # μ̂ = (n − b)/s
    assert fits.bestfit[2, 0] == 0.0 and any("mu (lower bound 0)" in w for w in fits.warnings)

    model, _ = oracle.seed()
    discovery = lc.pyhf_hypotest(SEED, None, [25.0], test_stat="q0", expected=True)
    with oracle.tight_fits():
        p0, band = pyhf.infer.hypotest(0.0, jnp.asarray([25.0] + model.config.auxdata), model, test_stat="q0",
                                       return_expected_set=True)
    assert discovery.p0[0] == pytest.approx(float(p0), rel=1e-6)
    np.testing.assert_allclose(discovery.p0_expected[0], [float(v) for v in band], rtol=1e-6)
    assert discovery.ntoys is None and discovery.cls_uncertainty is None

    toys = lc.pyhf_hypotest(SEED, [1.0], calctype="toybased", ntoys=50, seed=3)
    assert toys.calctype == "toybased" and (toys.ntoys, toys.seed) == (50, 3) and toys.cls_uncertainty.shape == (1,)

    short = lc.pyhf_upper_limit(SEED, [0.0, 0.5, 1.0])
    assert short.observed is None and np.isnan(short.expected).all()
    assert any("beyond the scan" in w for w in short.warnings)
    ax = short.plot()
    assert "outside the scan" in ax.get_legend_handles_labels()[1][3]
    plt.close(ax.figure)


def test_interpolation_codes_travel_with_the_model():
    codes = interpolation_codes(normsys="code1", histosys="code0")
    assert codes == {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}
    assert interpolation_codes(histosys="code2") == {"histosys": {"interpcode": "code2"}}
    assert workspace_model({"channels": []}, modifier_settings=codes)["modifier_settings"] == codes
    model = simple_model([1.0], [2.0], bkg_up=[2.5], bkg_down=[1.5], modifier_settings=codes)
    assert model["modifier_settings"] == codes and model["simple"]["kind"] == "correlated_background"
