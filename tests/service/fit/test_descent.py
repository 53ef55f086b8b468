"""/v1/fit/line by gradient descent: the seed's experiment, both backends, standardize, covariance.

Oracles: a plain numpy minibatch-SGD loop over the documented batch order (numpy
``default_rng(seed).permutation(N)`` per epoch), numpy.polyfit, and closed-form (AᵀWA)⁻¹.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from labcrunch_service import backends, progress
from labcrunch_service.errors import ComputeTimeout
from labcrunch_service.fit.descent import gradient_descent
from labcrunch_service.fit.line import DescentOptions, line_points
from tests.conftest import assert_problem
from tests.helpers.fit_data import ROUTE, post_npy, seed_data

SEED_GD = {"optimizer": "sgd", "learning_rate": 1e-6, "epochs": 5, "batch_size": 100,
           "initial": {"m": 5.0, "q": 10.0}, "shuffle": True, "seed": 0, "standardize": False}


def fit_gd(api, x, y, sigma=None, backend="jax", **gd):
    payload = {"x": x.tolist(), "y": y.tolist(), "method": "gradient_descent", "backend": backend,
               "gradient_descent": gd}
    if sigma is not None:
        payload["sigma"] = sigma.tolist()
    r = api.post(ROUTE, json=payload)
    assert r.status_code == 200, r.text
    return r.json()


def numpy_sgd(x, y, *, learning_rate, epochs, batch_size, initial, seed, weights=None):
    """Reference minibatch SGD on the (weighted) mean squared error, with Keras' per-epoch loss
    average."""
    rng = np.random.default_rng(seed)
    w = np.ones_like(x) if weights is None else weights
    m, q = initial["m"], initial["q"]
    losses, ms, qs = [], [], []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            residual = m * x[batch] + q - y[batch]
            total += len(batch) * np.mean(w[batch] * residual**2)
            m, q = (m - learning_rate * np.mean(2 * w[batch] * residual * x[batch]),
                    q - learning_rate * np.mean(2 * w[batch] * residual))
        losses.append(total / len(x))
        ms.append(m)
        qs.append(q)
    return np.array(losses), np.array(ms), np.array(qs)


@pytest.fixture(scope="module")
def seed_experiment(api):
    x, y, _ = seed_data()
    return x, y, {backend: fit_gd(api, x, y, backend=backend, **SEED_GD)
                  for backend in ("jax", "tensorflow")}


def test_seed_experiment_follows_the_reference_sgd(seed_experiment):
    x, y, fits = seed_experiment
    loss, m, q = numpy_sgd(x, y, **{k: SEED_GD[k] for k in
                                    ("learning_rate", "epochs", "batch_size", "initial", "seed")})
    history = fits["jax"]["history"]
    np.testing.assert_allclose(history["loss"], loss, rtol=1e-10)
    np.testing.assert_allclose(history["m"], m, rtol=1e-10)
    np.testing.assert_allclose(history["q"], q, rtol=1e-10)
    assert (fits["jax"]["m"], fits["jax"]["q"]) == (history["m"][-1], history["q"][-1])


@pytest.mark.parametrize(("n", "batch_size"), [(1037, 100), (50, 7)])
def test_uneven_batches_follow_the_reference_sgd(api, n, batch_size):
    """A shorter last batch, and sizes that are not the compiled (padded) shapes."""
    x, y, _ = seed_data(n=n)
    gd = SEED_GD | {"epochs": 3, "batch_size": batch_size, "seed": n}
    history = fit_gd(api, x, y, **gd)["history"]
    loss, m, q = numpy_sgd(x, y, **{k: gd[k] for k in
                                    ("learning_rate", "epochs", "batch_size", "initial", "seed")})
    np.testing.assert_allclose(history["loss"], loss, rtol=1e-10)
    np.testing.assert_allclose(history["m"], m, rtol=1e-10)
    np.testing.assert_allclose(history["q"], q, rtol=1e-10)


def test_seed_experiment_loss_falls_to_the_least_squares_floor(seed_experiment):
    """With lr 1e-6 the slope settles in the first epoch; afterwards the epoch loss sits within a
    few per cent of the least-squares minimum and jitters with the minibatches (it does not keep
    decreasing: the intercept barely moves from its start at this learning rate)."""
    x, y, fits = seed_experiment
    coef = np.polyfit(x, y, 1)
    floor = np.mean((y - np.polyval(coef, x)) ** 2)
    loss = np.array(fits["jax"]["history"]["loss"])
    assert loss[0] > 5 * loss[1]
    assert np.all(loss[1:] < 1.1 * floor) and np.all(loss[1:] > 0.95 * floor), loss / floor
    assert abs(fits["jax"]["m"] - coef[0]) < 0.05


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_weighted_standardized_descent_follows_the_reference_sgd(api, backend):
    """The documented recipe, written out: x' = (x - x̄)/s with the weighted mean and spread,
    weights 1/σ² divided by their mean, SGD on a·x' + c from the mapped start, mapped back."""
    x, y, sigma = seed_data(n=300)
    gd = {"learning_rate": 0.1, "epochs": 3, "batch_size": 64, "initial": {"m": 1.0, "q": 2.0},
          "seed": 5, "standardize": True}
    fit = fit_gd(api, x, y, sigma, backend=backend, **gd)
    w = 1 / sigma**2
    center = np.sum(w * x) / np.sum(w)
    scale = np.sqrt(np.sum(w * (x - center) ** 2) / np.sum(w))
    start = {"m": gd["initial"]["m"] * scale, "q": gd["initial"]["q"] + gd["initial"]["m"] * center}
    loss, a, c = numpy_sgd((x - center) / scale, y, learning_rate=0.1, epochs=3, batch_size=64,
                           initial=start, seed=5, weights=w / w.mean())
    rtol = 1e-10 if backend == "jax" else 1e-7  # Keras: float32 learning rate (0.1 is off by 1.5e-8)
    np.testing.assert_allclose(fit["history"]["m"], a / scale, rtol=rtol)
    np.testing.assert_allclose(fit["history"]["q"], c - a * center / scale, rtol=rtol)
    np.testing.assert_allclose(fit["history"]["loss"], loss, rtol=1e-10 if backend == "jax" else 1e-6)


def test_npy_query_options_follow_the_reference_sgd(api):
    """Every option of a .npy request comes from the query string (initial as initial_m/initial_q)."""
    x, y, _ = seed_data(n=250)
    params = {"method": "gradient_descent", "learning_rate": 2e-6, "epochs": 2, "batch_size": 40,
              "initial_m": 4.0, "initial_q": -3.0, "seed": 9, "standardize": "false"}
    r = post_npy(api, np.column_stack([x, y]), **params)
    assert r.status_code == 200, r.text
    loss, m, q = numpy_sgd(x, y, learning_rate=2e-6, epochs=2, batch_size=40,
                           initial={"m": 4.0, "q": -3.0}, seed=9)
    history = r.json()["history"]
    np.testing.assert_allclose(history["loss"], loss, rtol=1e-10)
    np.testing.assert_allclose(history["m"], m, rtol=1e-10)
    np.testing.assert_allclose(history["q"], q, rtol=1e-10)


def test_jax_and_tensorflow_agree_on_the_history(seed_experiment):
    _, _, fits = seed_experiment
    jax_fit, tf_fit = fits["jax"], fits["tensorflow"]
    assert (jax_fit["backend"], tf_fit["backend"]) == ("jax", "tensorflow")
    # Keras keeps its loss tracker (and learning rate) in float32: losses agree to ~1e-7.
    np.testing.assert_allclose(tf_fit["history"]["loss"], jax_fit["history"]["loss"], rtol=1e-6)
    np.testing.assert_allclose(tf_fit["history"]["m"], jax_fit["history"]["m"], rtol=1e-9)
    np.testing.assert_allclose(tf_fit["history"]["q"], jax_fit["history"]["q"], rtol=1e-9)
    np.testing.assert_allclose(tf_fit["covariance"], jax_fit["covariance"], rtol=1e-8)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_epochs_split_into_several_calls_follow_the_reference_sgd(api, workers, backend):
    """An epoch longer than CHUNK_BATCHES minibatches runs as several compiled / Keras `fit` calls
    (the deadline is checked between them): same batches, same history as the reference."""
    from labcrunch_service.fit import descent

    x, y, _ = seed_data(n=200)
    gd = SEED_GD | {"epochs": 2, "batch_size": 7, "seed": 11}
    workers.setattr(descent.__name__, "CHUNK_BATCHES", 3)  # 29 batches: 10 calls, the last short
    history = fit_gd(api, x, y, backend=backend, **gd)["history"]
    loss, m, q = numpy_sgd(x, y, **{k: gd[k] for k in
                                    ("learning_rate", "epochs", "batch_size", "initial", "seed")})
    tf = backend == "tensorflow"
    np.testing.assert_allclose(history["loss"], loss, rtol=1e-6 if tf else 1e-10)
    np.testing.assert_allclose(history["m"], m, rtol=1e-9 if tf else 1e-10)
    np.testing.assert_allclose(history["q"], q, rtol=1e-9 if tf else 1e-10)


def test_adam_agrees_across_backends(api):
    x, y, sigma = seed_data(n=300)
    gd = {"optimizer": "adam", "learning_rate": 0.5, "epochs": 3, "batch_size": 64, "seed": 4}
    jax_fit = fit_gd(api, x, y, sigma, backend="jax", **gd)
    tf_fit = fit_gd(api, x, y, sigma, backend="tensorflow", **gd)
    # Keras holds β₂ = 0.999 in float32 (1 - β₂ off by 1.3e-5 relative) and adds ε to the
    # uncorrected √v: the paths agree to ~1e-5, not to float64 precision.
    np.testing.assert_allclose(tf_fit["history"]["m"], jax_fit["history"]["m"], rtol=5e-5)
    np.testing.assert_allclose(tf_fit["history"]["q"], jax_fit["history"]["q"], rtol=5e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_standardize_reaches_least_squares_in_a_few_epochs(api, weighted):
    """lr 0.1 in standardized units, 5 epochs of 10 minibatches, start at (0, 0). Constant-rate
    SGD ends jittering about the minimum by ≈ √(lr·N/B) σ_LS ≈ 1 σ, so we ask for 2 σ."""
    x, y, sigma = seed_data()
    sigma = sigma if weighted else None
    fit = fit_gd(api, x, y, sigma, learning_rate=0.1, epochs=5, batch_size=100, standardize=True)
    if weighted:
        coef, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    else:
        coef, cov = np.polyfit(x, y, 1, cov=True)
    err = np.sqrt(np.diag(cov))
    assert abs(fit["m"] - coef[0]) < 2 * err[0], (fit["m"], coef[0], err[0])
    assert abs(fit["q"] - coef[1]) < 2 * err[1], (fit["q"], coef[1], err[1])
    assert len(fit["history"]["m"]) == 5


def test_gradient_descent_covariance_is_twice_the_inverse_hessian(api):
    """χ² = Σ wᵢ rᵢ² has Hessian 2·AᵀWA everywhere, so 2·H⁻¹ = (AᵀWA)⁻¹ = polyfit's unscaled cov;
    without σ it is (AᵀA)⁻¹ scaled by χ²/ndf at the end point."""
    x, y, sigma = seed_data(n=400)
    weighted = fit_gd(api, x, y, sigma, epochs=2)
    _, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    np.testing.assert_allclose(weighted["covariance"], cov, rtol=1e-9)
    assert weighted["covariance_scaled"] is False

    plain = fit_gd(api, x, y, epochs=2)
    design = np.column_stack([x, np.ones_like(x)])
    chi2 = np.sum((y - plain["m"] * x - plain["q"]) ** 2)
    expected = np.linalg.inv(design.T @ design) * chi2 / (len(x) - 2)
    np.testing.assert_allclose(plain["chi2"], chi2, rtol=1e-10)
    np.testing.assert_allclose(plain["covariance"], expected, rtol=1e-8)
    assert plain["covariance_scaled"] is True


def test_no_shuffle_visits_points_in_order(api):
    x, y, _ = seed_data(n=200)
    gd = {"learning_rate": 1e-6, "epochs": 2, "batch_size": 50, "initial": {"m": 5.0, "q": 10.0},
          "shuffle": False, "standardize": False}
    fit = fit_gd(api, x, y, **gd)
    m, q = 5.0, 10.0
    for _ in range(2):
        for start in range(0, 200, 50):
            r = m * x[start:start + 50] + q - y[start:start + 50]
            m, q = m - 1e-6 * np.mean(2 * r * x[start:start + 50]), q - 1e-6 * np.mean(2 * r)
    np.testing.assert_allclose([fit["m"], fit["q"]], [m, q], rtol=1e-12)


def test_divergence_is_reported_not_a_server_error(api):
    x, y, _ = seed_data(n=200)
    fit = fit_gd(api, x, y, learning_rate=1.0, epochs=4, batch_size=10, standardize=False)
    assert fit["diverged"] is True
    assert fit["m"] in ("NaN", "Infinity", "-Infinity")


def test_another_learning_rate_and_a_similar_size_compile_nothing(api, workers):
    """The learning rate is optimizer state and data and batch tables are padded to bucketed
    shapes: a second fit with another rate, epoch count and 10 fewer points traces nothing."""
    x, y, _ = seed_data(n=300)
    fit_gd(api, x, y, learning_rate=0.1, epochs=1, batch_size=50)
    before = workers.traces()["fit.jax"]
    fit_gd(api, x[:290], y[:290], learning_rate=0.02, epochs=2, batch_size=50)
    assert workers.traces()["fit.jax"] == before


def test_unknown_backend_or_optimizer_is_422(api):
    x, y, _ = seed_data(n=10)
    for extra in ({"backend": "torch"}, {"gradient_descent": {"optimizer": "lbfgs"}}):
        payload = {"x": x.tolist(), "y": y.tolist(), "method": "gradient_descent"} | extra
        assert_problem(api.post(ROUTE, json=payload), 422)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_one_long_epoch_stops_at_the_wall_time(backend):
    """One epoch of 50,000 single-point batches (~12 s on Keras) under a 1 s deadline: the fit
    stops with ComputeTimeout instead of holding its compute slot long after the 503."""
    x = np.arange(50_000.0)
    points = line_points(x, 2 * x + 1, max_points=10**6)
    options = DescentOptions(epochs=1 if backend == "tensorflow" else 10_000, batch_size=1)
    if backend == "tensorflow":
        backends.tensorflow()  # imported before the clock starts (seconds, not the fit's time)
    start = time.monotonic()
    with progress.tracking(progress.Tracker(deadline=start + 1.0)), pytest.raises(ComputeTimeout):
        gradient_descent(points, options, backend, max_epochs=10**6, max_batches=10**9)
    assert time.monotonic() - start < 8
