"""/v1/fit/line over HTTP, checked against numpy.polyfit.

numpy.polyfit's covariance conventions (numpy 2.x): with ``w=1/sigma`` and ``cov="unscaled"`` it is
(AᵀWA)⁻¹, W = diag(1/σ²), σ taken as absolute; with ``cov=True`` the same matrix (W = I when no
weights) multiplied by χ²/(N - 2). The service uses the first with sigma and the second without.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from labcrunch_service.settings import Limits
from tests.conftest import assert_problem, serving
from tests.helpers.fit_data import ROUTE, post_npy, seed_data


def offset_data():
    """x far from 0 compared with its spread: where uncentered normal equations lose digits."""
    rng = np.random.default_rng(3)
    x = 1e4 + rng.uniform(0, 10, 200)
    sigma = rng.uniform(0.5, 2.0, 200)
    return x, -0.3 * x + 50 + rng.normal(0, sigma), sigma


def polyfit_oracle(x, y, sigma):
    if sigma is None:
        coef, cov = np.polyfit(x, y, 1, cov=True)
    else:
        coef, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    weights = 1.0 if sigma is None else 1 / sigma**2
    return coef, cov, np.sum(weights * (y - np.polyval(coef, x)) ** 2)


def exact_oracle(x, y, sigma):
    """The weighted normal equations solved in exact rational arithmetic, rounded at the end."""
    xs, ys = [Fraction(v) for v in x], [Fraction(v) for v in y]
    ws = [Fraction(1)] * len(xs) if sigma is None else [1 / Fraction(s) ** 2 for s in sigma]
    sw = sum(ws)
    swx = sum(w * a for w, a in zip(ws, xs, strict=True))
    swy = sum(w * b for w, b in zip(ws, ys, strict=True))
    swxx = sum(w * a * a for w, a in zip(ws, xs, strict=True))
    swxy = sum(w * a * b for w, a, b in zip(ws, xs, ys, strict=True))
    det = sw * swxx - swx * swx
    m, q = (sw * swxy - swx * swy) / det, (swxx * swy - swx * swxy) / det
    chi2 = sum(w * (b - m * a - q) ** 2 for w, a, b in zip(ws, xs, ys, strict=True))
    scale = chi2 / (len(xs) - 2) if sigma is None else 1
    cov = [[sw / det * scale, -swx / det * scale], [-swx / det * scale, swxx / det * scale]]
    return np.array([float(m), float(q)]), np.array(cov, dtype=float), float(chi2)


def assert_matches(body: dict, oracle, x, y, sigma, rtol: float) -> None:
    coef, cov, chi2 = oracle(x, y, sigma)
    np.testing.assert_allclose([body["m"], body["q"]], coef, rtol=rtol)
    np.testing.assert_allclose(body["covariance"], cov, rtol=rtol)
    np.testing.assert_allclose([body["uncertainty"]["m"], body["uncertainty"]["q"]],
                               np.sqrt(np.diag(cov)), rtol=rtol)
    rho = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    np.testing.assert_allclose(np.asarray(body["correlation"]), [[1, rho], [rho, 1]], rtol=rtol)
    np.testing.assert_allclose(body["chi2"], chi2, rtol=1e-8)
    assert body["ndf"] == len(x) - 2
    assert body["covariance_scaled"] is (sigma is None)


def fit_json(api, x, y, sigma) -> dict:
    payload = {"x": x.tolist(), "y": y.tolist()} | ({} if sigma is None else {"sigma": sigma.tolist()})
    r = api.post(ROUTE, json=payload)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("weighted", [False, True])
def test_least_squares_equals_polyfit(api, weighted):
    x, y, sigma = seed_data()
    sigma = sigma if weighted else None
    body = fit_json(api, x, y, sigma)
    assert_matches(body, polyfit_oracle, x, y, sigma, rtol=1e-10)
    assert body["method"] == "least_squares" and body["history"] is None
    assert body["device"] and body["elapsed_ms"] >= 0


@pytest.mark.parametrize("weighted", [False, True])
def test_least_squares_is_exact_far_from_the_origin(api, weighted):
    """x = 10⁴ + [0, 10]: the centered sums keep every digit that exact arithmetic has (polyfit's
    scaled covariance is off by ~2e-9 relative here)."""
    x, y, sigma = offset_data()
    sigma = sigma if weighted else None
    assert_matches(fit_json(api, x, y, sigma), exact_oracle, x, y, sigma, rtol=1e-12)


def test_a_million_points_keep_their_digits(api):
    """y = 2.5·x + 1.2 on x = 0..10⁶-1, as a .npy body: the fit is that line up to the rounding of
    the y values (~1e-10). Sums taken in order (a BLAS dot) lost 5e-7 in the intercept here."""
    x = np.arange(1e6)
    r = post_npy(api, np.column_stack([x, 2.5 * x + 1.2]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["m"] - 2.5) < 1e-14 and abs(body["q"] - 1.2) < 1e-9, (body["m"], body["q"])


def test_two_points_without_sigma_have_undetermined_covariance(api):
    r = api.post(ROUTE, json={"x": [0, 2], "y": [1, 5]})
    body = r.json()
    assert (body["m"], body["q"], body["ndf"]) == (2.0, 1.0, 0)
    assert body["covariance"] == [["NaN", "NaN"], ["NaN", "NaN"]]  # no residual variance at ndf 0


def test_npy_body_equals_json(api):
    x, y, sigma = seed_data()
    r = post_npy(api, np.column_stack([x, y, sigma]))
    assert r.status_code == 200, r.text
    assert_matches(r.json(), polyfit_oracle, x, y, sigma, rtol=1e-10)
    r = post_npy(api, np.column_stack([x, y]).astype(np.float32))
    assert r.status_code == 200, r.text
    x32, y32 = x.astype(np.float32).astype(float), y.astype(np.float32).astype(float)
    assert_matches(r.json(), polyfit_oracle, x32, y32, None, rtol=1e-10)


def test_npy_options_come_from_the_query(api):
    x, y, _ = seed_data()
    r = post_npy(api, np.column_stack([x, y]), method="gradient_descent", epochs=3,
                 learning_rate=0.1, initial_m=1.0, initial_q=-2.0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "gradient_descent" and len(body["history"]["loss"]) == 3


def test_gradient_descent_is_the_documented_name_and_gd_still_works(api):
    """The options are documented as `gradient_descent` (start point `initial`, query
    `initial_m`/`initial_q`); the earlier `gd`, `init` and `init_m`/`init_q` are still accepted."""
    openapi = api.get("/openapi.json").json()["paths"][ROUTE]["post"]
    body_schema = openapi["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "gradient_descent" in body_schema and "gd" not in body_schema
    assert "initial" in body_schema["gradient_descent"]["properties"]
    query = {p["name"] for p in openapi["parameters"]}
    assert {"initial_m", "initial_q"} <= query and not {"gd", "init_m", "init_q"} & query

    x, y, _ = seed_data(n=200)
    points = {"x": x.tolist(), "y": y.tolist(), "method": "gradient_descent"}
    options = {"learning_rate": 2e-6, "epochs": 3, "standardize": False}
    new = api.post(ROUTE, json=points | {"gradient_descent": options | {"initial": {"m": 4.0, "q": -3.0}}})
    old = api.post(ROUTE, json=points | {"gd": options | {"init": {"m": 4.0, "q": -3.0}}})
    default_start = api.post(ROUTE, json=points | {"gradient_descent": options})
    assert new.status_code == old.status_code == default_start.status_code == 200, old.text
    assert len(old.json()["history"]["loss"]) == 3  # the options were read, not the defaults
    assert old.json()["history"] == new.json()["history"] != default_start.json()["history"]
    by_query = [post_npy(api, np.column_stack([x, y]), method="gradient_descent", epochs=3,
                         learning_rate=2e-6, standardize="false", **{f"{prefix}_m": 4.0, f"{prefix}_q": -3.0})
                for prefix in ("initial", "init")]
    assert by_query[0].json()["history"] == by_query[1].json()["history"] == new.json()["history"]

    # an error under the old name is placed where the client put it; both names at once are refused
    body = assert_problem(api.post(ROUTE, json=points | {"gd": {"learning_rate": -1}}), 422)
    assert body["errors"][0]["loc"] == ["body", "gd", "learning_rate"]
    assert_problem(api.post(ROUTE, json=points | {"gd": {}, "gradient_descent": {}}), 422)


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"x": [0, 1, 2], "y": [1, 2]}, ["body", "y"]),
        ({"x": [1], "y": [2]}, ["body", "x"]),
        ({"x": [], "y": []}, ["body", "x"]),
        ({"x": [0, 1, 2], "y": [1, "NaN", 3]}, ["body", "y", 1]),
        ({"x": [0, "Infinity", 2], "y": [1, 2, 3]}, ["body", "x", 1]),
        ({"x": [0, 1, 2], "y": [1, 2, 3], "sigma": [1, 0, 1]}, ["body", "sigma", 1]),
        ({"x": [0, 1, 2], "y": [1, 2, 3], "sigma": [1, 1, -2]}, ["body", "sigma", 2]),
        ({"x": [0, 1, 2], "y": [1, 2, 3], "sigma": [1, 1]}, ["body", "sigma"]),
        ({"x": [4, 4, 4], "y": [1, 2, 3]}, ["body", "x"]),
        ({"x": [0, 1, 2], "y": [1, 2, 3], "method": "magic"}, ["body", "method"]),
        ({"x": [0, 1, 2], "y": [1, 2, 3], "gradient_descent": {"learning_rate": -1}},
         ["body", "gradient_descent", "learning_rate"]),
    ],
    ids=["lengths-differ", "one-point", "no-points", "nan", "inf", "sigma-zero", "sigma-negative",
         "sigma-length", "all-x-equal", "unknown-method", "negative-learning-rate"],
)
def test_bad_input_is_422_naming_the_place(api, payload, loc):
    body = assert_problem(api.post(ROUTE, json=payload), 422)
    assert body["errors"][0]["loc"] == loc, body


@pytest.mark.parametrize("method", ["least_squares", "gradient_descent"])
@pytest.mark.parametrize(
    ("points", "says"),
    [({"x": [1, 1], "y": [0, 1]}, "All x are equal"),
     ({"x": [0, 1e300, 2e300], "y": [1, 2, 3]}, "float64"),  # Σ(x - x̄)² is not a float64
     ({"x": [0, 1, 2], "y": [1e308, -1e308, 1e308]}, "float64"),
     ({"x": [0, 1, 2], "y": [1, 2, 3], "sigma": [1e-200, 1, 1]}, "overflows")],
)
def test_bad_points_are_refused_for_both_methods(api, method, points, says):
    body = assert_problem(api.post(ROUTE, json=points | {"method": method}), 422)
    assert says in body["detail"]


def test_bad_npy_bodies_are_422(api):
    assert_problem(post_npy(api, np.zeros((5, 4))), 422)
    assert_problem(post_npy(api, np.zeros(5)), 422)
    assert_problem(api.post(ROUTE, content=b"not an array",
                            headers={"Content-Type": "application/x-npy"}), 422)
    table = np.column_stack([np.arange(4.0), np.ones(4)])
    table[2, 1] = np.nan
    body = assert_problem(post_npy(api, table), 422)
    assert body["errors"][0]["loc"] == ["body", "y", 2]


def test_query_options_with_json_and_other_media_types_are_refused(api):
    assert_problem(api.post(ROUTE, params={"epochs": 3}, json={"x": [0, 1], "y": [0, 1]}), 422)
    assert_problem(api.post(ROUTE, content=b"x,y\n0,1", headers={"Content-Type": "text/csv"}), 415)


@pytest.fixture(scope="module")
def small_api():
    """An app with tiny fit limits, to see the 413 answers without big requests."""
    limits = Limits(max_fit_points=50, max_fit_epochs=4, max_fit_batches=10)
    with serving(limits=limits) as client:
        yield client


def test_over_limit_work_is_413_naming_the_limit(small_api):
    x = np.arange(60.0)
    body = assert_problem(small_api.post(ROUTE, json={"x": x.tolist(), "y": x.tolist()}), 413)
    assert (body["limit"], body["maximum"], body["value"]) == ("max_fit_points", 50, 60)
    body = assert_problem(post_npy(small_api, np.column_stack([x, x, x + 1])), 413)
    assert (body["limit"], body["maximum"], body["value"]) == ("max_fit_points", 50, 60)
    body = assert_problem(post_npy(small_api, np.zeros((500, 2))), 413)  # in points, not elements
    assert (body["limit"], body["maximum"], body["value"]) == ("max_fit_points", 50, 500)
    points = {"x": x[:40].tolist(), "y": x[:40].tolist(), "method": "gradient_descent"}
    body = assert_problem(small_api.post(ROUTE, json=points | {"gradient_descent": {"epochs": 5}}), 413)
    assert (body["limit"], body["value"]) == ("max_fit_epochs", 5)
    body = assert_problem(small_api.post(ROUTE, json=points | {"gradient_descent": {"epochs": 3, "batch_size": 10}}), 413)
    assert (body["limit"], body["value"]) == ("max_fit_batches", 12)
    assert small_api.post(ROUTE, json=points | {"gradient_descent": {"epochs": 2, "batch_size": 10}}).status_code == 200


def test_limits_are_listed_in_info(api):
    limits = api.get("/v1/info").json()["limits"]
    assert {"max_fit_points", "max_fit_epochs", "max_fit_batches"} <= limits.keys()
