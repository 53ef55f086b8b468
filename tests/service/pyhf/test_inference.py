"""/v1/pyhf/hypotest, /upper-limit and /scan against plain pyhf, root finding and finite differences."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pyhf
import pytest
from scipy.optimize import brentq, minimize_scalar

from tests.helpers import pyhf_oracle as oracle
from tests.helpers.pyhf_oracle import SEED_MODEL as SIMPLE
from tests.helpers.pyhf_oracle import WORKSPACE_MODEL


def post(api, path, **body):
    response = api.post(f"/v1/pyhf/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def seed():
    return oracle.seed()


def test_workspace_cls_equals_pyhf_hypotest(api):
    model, data, _ = oracle.workspace()
    mus = [2.0, 3.0]
    out = post(api, "hypotest", model=WORKSPACE_MODEL, data="observed", poi_values=mus, expected=True)
    assert out["poi"] == "mu" and out["expected_sigmas"] == [-2, -1, 0, 1, 2]
    for k, mu in enumerate(mus):
        with oracle.tight_fits():
            cls, (clsb, clb), band = pyhf.infer.hypotest(mu, data, model, test_stat="qtilde",
                                                         return_tail_probs=True, return_expected_set=True)
        assert out["cls"][k] == pytest.approx(float(cls), rel=1e-5)
        assert out["clsb"][k] == pytest.approx(float(clsb), rel=1e-5)
        assert out["clb"][k] == pytest.approx(float(clb), rel=1e-5)
        np.testing.assert_allclose(out["cls_expected"][k], [float(v) for v in band], rtol=1e-5)
        assert out["cls"][k] == pytest.approx(out["clsb"][k] / out["clb"][k], rel=1e-12)


def test_single_poi_value_and_no_band_by_default(api, seed):
    model, data = seed
    out = post(api, "hypotest", model=SIMPLE, poi_values=1.0)
    assert out["poi_values"] == [1.0] and len(out["cls"]) == 1
    assert "cls_expected" not in out
    assert out["cls"][0] == pytest.approx(float(pyhf.infer.hypotest(1.0, data, model)), rel=1e-5)


def test_upper_limit_matches_root_of_pyhf_cls(api, seed):
    """Oracle: brentq on pyhf.infer.hypotest's CLs(μ) − 0.05 (no grid at all). The service
    interpolates linearly on a 0.1-wide grid; CLs is smooth there, so they agree to ~1e-2."""
    model, data = seed
    out = post(api, "upper-limit", model=SIMPLE, scan={"start": 0.0, "stop": 5.0, "points": 51})

    def cls(mu, which=None):
        result = pyhf.infer.hypotest(mu, data, model, return_expected_set=which is not None)
        return float(result if which is None else result[1][which]) - 0.05

    assert out["observed"] == pytest.approx(brentq(cls, 1.0, 5.0, xtol=1e-6), abs=1e-2)
    assert out["expected"][2] == pytest.approx(brentq(cls, 1.0, 5.0, args=(2,), xtol=1e-6), abs=1e-2)
    assert out["expected"] == sorted(out["expected"])  # −2σ … +2σ
    assert out["warnings"] == []
    assert len(out["cls"]) == 51 and len(out["cls_expected"]) == 51


def test_upper_limit_beyond_the_scan_is_null_and_warns(api):
    """CLs stays above 0.05 up to μ = 1, the scan's end: the limit is not 1 but unknown (null)."""
    out = post(api, "upper-limit", model=SIMPLE, scan=[0.0, 0.5, 1.0])
    assert out["observed"] is None and out["expected"] == [None] * 5
    assert min(out["cls"]) > 0.05
    assert any("observed CLs stays above 0.05" in w and "beyond the scan" in w for w in out["warnings"])


def test_scan_values_and_gradients(api, seed):
    """Values against pyhf's logpdf evaluated point by point; gradients against central finite
    differences of the same (numpy arithmetic, step 1e-5)."""
    model, data = seed
    out = post(api, "scan", model=SIMPLE, x={"name": "mu", "low": 0.5, "high": 1.5, "points": 21},
               y={"name": "uncorr_bkguncrt[0]", "low": 0.5, "high": 1.5, "points": 11},
               gradient_points=[5, 4])
    x, y, values = np.asarray(out["x"]), np.asarray(out["y"]), np.asarray(out["values"])
    assert values.shape == (11, 21) and out["center"] == "bestfit"
    np.testing.assert_allclose(x, np.linspace(0.5, 1.5, 21))

    def logpdf(mu, gamma):
        return float(model.logpdf(jnp.asarray([mu, gamma], dtype=jnp.float64), data)[0])

    for j, i in [(0, 0), (3, 7), (10, 20), (5, 10)]:
        assert values[j, i] == pytest.approx(logpdf(x[i], y[j]), rel=1e-12)
    gx, gy = np.asarray(out["gradient_x"]), np.asarray(out["gradient_y"])
    assert np.asarray(out["gradient"]["d_dx"]).shape == (4, 5)
    h = 1e-5
    for j, i in [(0, 0), (2, 3), (3, 4)]:
        d_dx = (logpdf(gx[i] + h, gy[j]) - logpdf(gx[i] - h, gy[j])) / (2 * h)
        d_dy = (logpdf(gx[i], gy[j] + h) - logpdf(gx[i], gy[j] - h)) / (2 * h)
        assert out["gradient"]["d_dx"][j][i] == pytest.approx(d_dx, rel=1e-6, abs=1e-8)
        assert out["gradient"]["d_dy"][j][i] == pytest.approx(d_dy, rel=1e-6, abs=1e-8)


def test_scan_twice_nll_on_a_plane_at_given_values(api):
    """Three parameters: μ and γ₁ scanned, γ₀ held at a given value."""
    spec = {"kind": "uncorrelated_background", "signal": [2.0, 3.0], "bkg": [7.0, 9.0], "bkg_uncertainty": [1.5, 2.5]}
    model = pyhf.simplemodels.uncorrelated_background(signal=spec["signal"], bkg=spec["bkg"],
                                                      bkg_uncertainty=spec["bkg_uncertainty"])
    data = jnp.asarray([8.0, 13.0] + model.config.auxdata, dtype=jnp.float64)
    out = post(api, "scan", model={"simple": spec}, data=[8.0, 13.0], quantity="twice_nll",
               at={"uncorr_bkguncrt[0]": 1.2}, x={"name": "mu", "low": 0.0, "high": 3.0, "points": 7},
               y={"name": "uncorr_bkguncrt[1]", "low": 0.8, "high": 1.2, "points": 5}, gradient_points=[2, 2])
    assert out["center"] == "given"
    np.testing.assert_allclose(out["base"], [1.0, 1.2, 1.0])
    point = jnp.asarray([out["x"][4], 1.2, out["y"][1]], dtype=jnp.float64)
    expected = -2 * float(model.logpdf(point, data)[0])
    assert out["values"][1][4] == pytest.approx(expected, rel=1e-12)


def test_profiled_scan_against_scalar_minimisation(api, settings):
    """Three parameters: μ and γ₀ scanned, γ₁ profiled. Oracle: scipy's bounded minimize_scalar
    of pyhf's NLL over γ₁ at each checked point (a different optimiser), and for the gradient
    central differences of that profile (its own minimisation at each step)."""
    spec = {"kind": "uncorrelated_background", "signal": [2.0, 3.0], "bkg": [7.0, 9.0], "bkg_uncertainty": [1.5, 2.5]}
    model = pyhf.simplemodels.uncorrelated_background(signal=spec["signal"], bkg=spec["bkg"],
                                                      bkg_uncertainty=spec["bkg_uncertainty"])
    data = jnp.asarray([8.0, 13.0] + model.config.auxdata, dtype=jnp.float64)
    out = post(api, "scan", model={"simple": spec}, data=[8.0, 13.0], profile=True,
               x={"name": "mu", "low": 0.0, "high": 2.0, "points": 5},
               y={"name": "uncorr_bkguncrt[0]", "low": 0.8, "high": 1.2, "points": 3}, gradient_points=[2, 2])
    assert out["profiled"] is True and out["warnings"] == []

    def profile_logpdf(mu, gamma0):
        found = minimize_scalar(lambda g1: -float(model.logpdf(jnp.asarray([mu, gamma0, g1]), data)[0]),
                                bounds=(0.5, 1.5), method="bounded", options={"xatol": 1e-10})
        return -found.fun

    for j, i in [(0, 0), (1, 3), (2, 4)]:
        assert out["values"][j][i] == pytest.approx(profile_logpdf(out["x"][i], out["y"][j]), rel=1e-7)
    h = 1e-4
    gx, gy = out["gradient_x"][1], out["gradient_y"][0]
    d_dx = (profile_logpdf(gx + h, gy) - profile_logpdf(gx - h, gy)) / (2 * h)
    d_dy = (profile_logpdf(gx, gy + h) - profile_logpdf(gx, gy - h)) / (2 * h)
    assert out["gradient"]["d_dx"][0][1] == pytest.approx(d_dx, rel=1e-4)
    assert out["gradient"]["d_dy"][0][1] == pytest.approx(d_dy, rel=1e-4)
    # Profiling can only raise the likelihood above the plain scan through the same plane.
    plain = post(api, "scan", model={"simple": spec}, data=[8.0, 13.0],
                 x={"name": "mu", "low": 0.0, "high": 2.0, "points": 5},
                 y={"name": "uncorr_bkguncrt[0]", "low": 0.8, "high": 1.2, "points": 3}, gradient_points=[2, 2])
    assert np.all(np.asarray(out["values"]) >= np.asarray(plain["values"]) - 1e-9)

    too_many = settings.limits.max_profile_points
    response = api.post("/v1/pyhf/scan", json={
        "model": {"simple": spec}, "profile": True, "x": {"name": "mu", "low": 0, "high": 2, "points": too_many},
        "y": {"name": "uncorr_bkguncrt[0]", "low": 0.8, "high": 1.2, "points": 2}})
    assert response.status_code == 413 and response.json()["limit"] == "max_profile_points"


def test_hypotest_with_q_statistic(api, seed):
    model, data = seed
    out = post(api, "hypotest", model=SIMPLE, poi_values=[1.5], test_stat="q")
    assert out["test_stat"] == "q"
    assert out["cls"][0] == pytest.approx(float(pyhf.infer.hypotest(1.5, data, model, test_stat="q")), rel=1e-5)


def test_cls_against_hand_written_asymptotics(api):
    """Independent of pyhf: the seed's NLL written out, minimised with scipy's L-BFGS-B, and the
    q̃μ asymptotic formulae (Cowan et al. 2011, eqs. 65-66) with the Asimov data at μ = 0."""
    from scipy.optimize import minimize
    from scipy.stats import norm

    s, b, tau = 5.0, 10.0, (10.0 / 3.5) ** 2

    def nll(mu, gamma, n, a):
        lam = s * mu + b * gamma
        return lam - n * np.log(lam) + tau * gamma - a * np.log(tau * gamma)

    def minimum(n, a, mu=None):
        opts = {"ftol": 1e-15, "gtol": 1e-12}
        if mu is None:
            r = minimize(lambda x: nll(x[0], x[1], n, a), [1.0, 1.0], bounds=[(0, 10), (1e-10, 10)],
                         method="L-BFGS-B", options=opts)
            return r.x[0], r.x[1], r.fun
        r = minimize(lambda x: nll(mu, x[0], n, a), [1.0], bounds=[(1e-10, 10)], method="L-BFGS-B", options=opts)
        return mu, r.x[0], r.fun

    def qtilde(mu, n, a):
        mu_hat, _, f_hat = minimum(n, a)
        return 0.0 if mu_hat > mu else max(2 * (minimum(n, a, mu)[2] - f_hat), 0.0)

    def cls(mu, n):
        q = qtilde(mu, n, tau)
        gamma0 = minimum(n, tau, 0.0)[1]
        q_a = qtilde(mu, b * gamma0, tau * gamma0)
        if q <= q_a:
            clsb, clb = norm.sf(np.sqrt(q)), norm.sf(np.sqrt(q) - np.sqrt(q_a))
        else:
            clsb, clb = norm.sf((q + q_a) / (2 * np.sqrt(q_a))), norm.sf((q - q_a) / (2 * np.sqrt(q_a)))
        return clsb / clb, clsb, clb

    for n in (8.0, 18.0):
        out = post(api, "hypotest", model=SIMPLE, data=[n], poi_values=[0.5, 1.5, 3.0])
        for k, mu in enumerate((0.5, 1.5, 3.0)):
            expected = cls(mu, n)
            # 1e-4: both sides minimise numerically (SLSQP in pyhf, L-BFGS-B here)
            assert [out["cls"][k], out["clsb"][k], out["clb"][k]] == pytest.approx(expected, rel=1e-4, abs=1e-7)
