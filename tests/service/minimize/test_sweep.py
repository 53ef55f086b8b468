"""/v1/minimize: optimizer paths against closed forms and an independent numpy re-derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labcrunch._arrays import array, number
from labcrunch_service.minimize import on_jax
from labcrunch_service.settings import Limits
from tests.conftest import assert_problem, serving
from tests.helpers.minimize_cases import ROSENBROCK, SEED_RATES

ROUTE = "/v1/minimize"
BACKENDS = ["jax", "tensorflow"]


def post_ok(api, **body) -> dict:
    response = api.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def path(run: dict, name: str = "x") -> np.ndarray:
    return array(run["history"]["x"][name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sgd_on_square_follows_the_closed_form(api, backend):
    """x_{k+1} = x_k − lr·2x_k, so x_k = x0·(1 − 2·lr)^k, for the seed's three rates."""
    x0, steps = 1.0, 50
    body = post_ok(api, expression="x**2", start={"x": x0}, optimizer="sgd",
                   learning_rate=SEED_RATES, steps=steps, backend=backend)
    assert body["variables"] == ["x"] and body["backend"] == backend
    assert body["device"] and body["elapsed_ms"] > 0
    k = np.arange(steps + 1)
    for run, lr in zip(body["runs"], SEED_RATES, strict=True):
        expected = x0 * (1 - 2 * lr) ** k
        assert run["learning_rate"] == lr
        assert run["history"]["step"] == k.tolist()  # starts at the start point: steps + 1 entries
        np.testing.assert_allclose(path(run), expected, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(array(run["history"]["value"]), expected**2, rtol=1e-13)
        np.testing.assert_allclose(array(run["history"]["grad_norm"]), np.abs(2 * expected), rtol=1e-13)
        assert run["x"]["x"] == pytest.approx(expected[-1], rel=1e-13)
        assert (run["steps_taken"], run["converged"], run["diverged"]) == (steps, False, False)


def test_sgd_in_float32_stays_float32_close(api):
    body = post_ok(api, expression="x**2", start={"x": 1.0}, learning_rate=0.1, steps=20,
                   dtype="float32")
    expected = (1 - 2 * np.float32(0.1)) ** np.arange(21, dtype=np.float32)
    np.testing.assert_allclose(path(body["runs"][0]), expected, rtol=1e-5)
    assert body["dtype"] == "float32"


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_stops_at_the_first_non_finite_value_with_200(api, backend):
    """lr = 1.5 on x**2: x_k = (−2)^k exactly; x_k² = 4^k overflows first at k = 512."""
    body = post_ok(api, expression="x**2", start={"x": 1.0}, learning_rate=1.5, steps=1000,
                   history_every=10, backend=backend)
    run = body["runs"][0]
    assert run["diverged"] and not run["converged"]
    assert run["steps_taken"] == 512
    assert run["history"]["step"] == [*range(0, 511, 10), 512]
    assert run["value"] == "Infinity" and run["history"]["value"][-1] == "Infinity"
    assert run["x"]["x"] == 2.0**512  # (−2)^512, exact in float64
    np.testing.assert_array_equal(path(run)[:-1], [(-2.0) ** k for k in range(0, 511, 10)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_tolerance_stops_at_the_first_small_gradient(api, backend):
    """SGD lr=0.1 on x**2: |g_k| = 2·0.8^k; the first k with |g_k| ≤ 1e-3 is the stop."""
    expected = math.ceil(math.log(1e-3 / 2) / math.log(0.8))
    body = post_ok(api, expression="x**2", start={"x": 1.0}, learning_rate=0.1, steps=1000,
                   tolerance=1e-3, history_every=10, backend=backend)  # the program above
    run = body["runs"][0]
    assert run["converged"] and not run["diverged"]
    assert run["steps_taken"] == expected == 35
    assert run["history"]["step"] == [0, 10, 20, 30, 35]
    assert run["grad_norm"] == pytest.approx(2 * 0.8**35, rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_thinned_history_keeps_the_last_step(api, backend):
    """2500 steps recorded every 2000 (tensorflow runs them in chunks of at most 1000)."""
    body = post_ok(api, expression="x**2", start={"x": 1.0}, learning_rate=1e-4, steps=2500,
                   history_every=2000, backend=backend)
    run = body["runs"][0]
    assert run["history"]["step"] == [0, 2000, 2500]
    np.testing.assert_allclose(path(run), (1 - 2e-4) ** np.array([0, 2000, 2500]), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("every", [7, 10**30])
def test_history_every_beyond_the_steps_keeps_the_start_and_the_end(api, backend, every):
    """history_every past `steps` (even past int64, which was a 500) records steps 0 and 5."""
    body = post_ok(api, expression="x**2", start={"x": 1.0}, learning_rate=0.25, steps=5,
                   history_every=every, backend=backend)
    run = body["runs"][0]
    assert run["history"]["step"] == [0, 5]
    assert path(run).tolist() == [1.0, 0.5**5]  # x_k = (1 − 2·0.25)^k, exact in binary


@pytest.mark.parametrize(("steps", "every"), [(2501, 3), (4100, 1500), (250, 1)])
def test_jax_histories_across_chunk_boundaries(api, steps, every):
    """jax runs at most CHUNK_STEPS steps and CHUNK_RECORDS records per call: the history
    still holds steps 0, every, 2·every, … and the last, each on x_k = (1 − 2·lr)^k."""
    assert steps > min(on_jax.CHUNK_RECORDS * every, on_jax.CHUNK_STEPS)
    body = post_ok(api, expression="x**2", start={"x": 1.0}, learning_rate=[1e-4, 3e-4],
                   steps=steps, history_every=every)
    k = np.array(sorted({*range(0, steps + 1, every), steps}))
    for run, lr in zip(body["runs"], [1e-4, 3e-4], strict=True):
        assert run["history"]["step"] == k.tolist() and run["steps_taken"] == steps
        np.testing.assert_allclose(path(run), (1 - 2 * lr) ** k, rtol=1e-12)


def test_jax_reports_progress_between_chunks(monkeypatch):
    """A long sweep is many compiled calls with a progress report (and so a wall-time check)
    before each: the job stops at the first report past its deadline instead of running every
    step in one call."""
    from labcrunch_service.errors import ComputeTimeout
    from labcrunch_service.minimize.sweep import minimize_expression

    checks = []

    def report(done, total, unit):
        checks.append((done, total, unit))
        if len(checks) == 3:
            raise ComputeTimeout("past the wall time")

    monkeypatch.setattr(on_jax, "report", report)
    with pytest.raises(ComputeTimeout):
        minimize_expression("x**2", backend="jax", limits=Limits(), start={"x": 1.0},
                            optimizer="sgd", learning_rate=1e-6, options={}, steps=50_000,
                            tolerance=None, history_every=1_000, bounds=None, dtype="float64")
    assert checks == [(0, 50_000, "steps"), (1_000, 50_000, "steps"), (2_000, 50_000, "steps")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bounds_project_each_step(api, backend):
    """(x − 3)² from 0 with x ≤ 1: x_{k+1} = min(1, x_k + 0.2·(3 − x_k))."""
    body = post_ok(api, expression="(x - 3)**2", start={"x": 0.0}, learning_rate=0.1, steps=6,
                   bounds={"x": [None, 1.0]}, backend=backend)
    expected = [0.0]
    for _ in range(6):
        expected.append(min(1.0, expected[-1] + 0.2 * (3 - expected[-1])))
    run = body["runs"][0]
    np.testing.assert_allclose(path(run), expected, rtol=1e-14)
    assert run["x"]["x"] == 1.0
    # at the bound the gradient 2(x − 3) < 0 points out of the box: the projected norm is 0
    expected_norm = [0.0 if x == 1.0 else abs(2 * (x - 3)) for x in expected]
    np.testing.assert_allclose(array(run["history"]["grad_norm"]), expected_norm, rtol=1e-14)
    body = post_ok(api, expression="(x - 3)**2", start={"x": 0.0}, learning_rate=0.1, steps=6,
                   bounds={"x": [None, 1.0]}, tolerance=0.0, backend=backend)
    assert (body["runs"][0]["converged"], body["runs"][0]["steps_taken"]) == (True, 2)


def test_adam_reaches_the_rosenbrock_minimum(api):
    body = post_ok(api, expression=ROSENBROCK, start={"x": -1.2, "y": 1.0}, optimizer="adam",
                   learning_rate=[0.02, 0.05], steps=5000, tolerance=1e-6, history_every=500)
    for run in body["runs"]:
        assert run["converged"], run["steps_taken"]
        assert run["steps_taken"] < 5000
        assert run["x"]["x"] == pytest.approx(1.0, abs=1e-5)
        assert run["x"]["y"] == pytest.approx(1.0, abs=1e-5)
        assert number(run["value"]) < 1e-10


def test_lbfgs_reaches_the_rosenbrock_minimum_without_a_learning_rate(api):
    body = post_ok(api, expression=ROSENBROCK, start={"x": -1.2, "y": 1.0}, optimizer="lbfgs",
                   steps=100, tolerance=1e-9)
    run = body["runs"][0]
    assert body["options"] == {"memory_size": 10} and run["learning_rate"] is None
    assert run["converged"] and run["steps_taken"] <= 60
    assert run["x"]["x"] == pytest.approx(1.0, abs=1e-8)
    assert run["x"]["y"] == pytest.approx(1.0, abs=1e-8)
    values = array(run["history"]["value"])
    assert np.all(np.diff(values) <= 0)  # a line search never goes uphill


# --- both backends take the same steps ------------------------------------------------------

QUADRATIC = "(x - 1)**2 + 2*(y + 0.5)**2 + 0.1*x*y"


def quadratic_grad(p: np.ndarray) -> np.ndarray:
    x, y = p
    return np.array([2 * (x - 1) + 0.1 * y, 4 * (y + 0.5) + 0.1 * x])


def reference_path(optimizer: str, lr: float, steps: int, *, momentum=0.9, beta_1=0.9,
                   beta_2=0.999, epsilon=1e-7, weight_decay=0.004, rho=0.9, centered=False,
                   initial_accumulator_value=0.1) -> np.ndarray:
    """The documented (Keras) update rules, written out in numpy (the oracle for both backends)."""
    p = np.array([-1.0, 1.0])
    v, m, s = np.zeros(2), np.zeros(2), np.zeros(2)
    accumulator = np.full(2, initial_accumulator_value)
    out = [p.copy()]
    for t in range(1, steps + 1):
        g = quadratic_grad(p)
        if optimizer == "sgd":
            p = p - lr * g
        elif optimizer == "adamw":  # the decay first, the Adam step with g from the old point
            p = p - lr * weight_decay * p
            m = beta_1 * m + (1 - beta_1) * g
            s = beta_2 * s + (1 - beta_2) * g * g
            p = p - lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(s) + epsilon)
        elif optimizer == "rmsprop":  # s: mean square, m: mean (centered), v: momentum
            s = rho * s + (1 - rho) * g * g
            m = rho * m + (1 - rho) * g
            increment = lr * g / np.sqrt(s - m * m + epsilon if centered else s + epsilon)
            v = momentum * v + increment
            p = p - v
        elif optimizer == "adagrad":
            accumulator = accumulator + g * g
            p = p - lr * g / np.sqrt(accumulator + epsilon)
        elif optimizer == "momentum":
            v = momentum * v - lr * g
            p = p + v
        elif optimizer == "nesterov":
            v = momentum * v - lr * g
            p = p + momentum * v - lr * g
        elif optimizer == "adam":  # ε added to √v before the bias correction (Keras's ε̂)
            m = beta_1 * m + (1 - beta_1) * g
            s = beta_2 * s + (1 - beta_2) * g * g
            p = p - lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(s) + epsilon)
        out.append(p.copy())
    return np.array(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("optimizer", "options"), [
    ("momentum", {"momentum": 0.8}), ("nesterov", {}), ("adam", {"beta_1": 0.8, "epsilon": 1e-3}),
    ("sgd", {}),
    ("adamw", {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3, "weight_decay": 0.5}),
    ("rmsprop", {"rho": 0.8, "momentum": 0.0, "epsilon": 1e-4, "centered": False}),
    ("rmsprop", {"rho": 0.7, "momentum": 0.5, "epsilon": 1e-4, "centered": True}),
    ("adagrad", {"initial_accumulator_value": 0.3, "epsilon": 1e-3})])
def test_backends_follow_the_documented_update_rules(api, backend, optimizer, options):
    """Two rates: each run starts afresh (tensorflow reuses one optimizer, reset between runs)."""
    rates = [0.05, 0.02]
    body = post_ok(api, expression=QUADRATIC, start={"x": -1.0, "y": 1.0}, optimizer=optimizer,
                   learning_rate=rates, options=options, steps=40, backend=backend)
    for run, lr in zip(body["runs"], rates, strict=True):
        expected = reference_path(optimizer, lr, 40, **options)
        got = np.column_stack([path(run, "x"), path(run, "y")])
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("optimizer", "options", "rates"), [
    ("sgd", {}, [0.01, 0.002]), ("adamw", {"weight_decay": 0.1}, [0.01]),
    ("rmsprop", {"momentum": 0.5, "centered": True}, [0.01]),
    ("adagrad", {"initial_accumulator_value": 0.5}, [0.01, 0.03])])
def test_jax_and_tensorflow_histories_agree(api, optimizer, options, rates):
    """On a non-polynomial function too (each optimizer is checked against numpy above)."""
    request = {"expression": "(1 - x)**2 + 10*(y - x**2)**2 + sin(x)", "start": {"x": -1.0, "y": 1.0},
               "optimizer": optimizer, "learning_rate": rates, "options": options, "steps": 30}
    by_backend = {b: post_ok(api, **request, backend=b) for b in BACKENDS}
    for jax_run, tf_run in zip(by_backend["jax"]["runs"], by_backend["tensorflow"]["runs"], strict=True):
        for name in ("x", "y"):
            np.testing.assert_allclose(path(jax_run, name), path(tf_run, name), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(array(jax_run["history"]["value"]),
                                   array(tf_run["history"]["value"]), rtol=1e-12)


# --- one compiled program per sweep, cached ---------------------------------------------------

def test_a_sweep_compiles_once_and_a_repeat_compiles_nothing(api, workers):
    request = {"expression": "(x - 2)**2 + y**4", "start": {"x": 0.0, "y": 1.0},
               "optimizer": "momentum", "learning_rate": [0.01, 0.02, 0.03, 0.04], "steps": 17}
    before = workers.traces()["minimize.jax"]
    first = post_ok(api, **request)
    assert workers.traces()["minimize.jax"] == before + 2  # four rates, one program (its start and its steps)
    again = post_ok(api, **request | {"start": {"x": 5.0, "y": -1.0}, "learning_rate": [0.5, 0.1, 0.2, 0.3],
                                      "steps": 2345, "history_every": 7})
    assert workers.traces()["minimize.jax"] == before + 2  # steps and history_every are run-time numbers
    assert len(first["runs"]) == len(again["runs"]) == 4


def test_tensorflow_traces_once_per_function_and_optimizer(api, workers):
    request = {"expression": "(x - 2)**2", "start": {"x": 0.0}, "optimizer": "adam",
               "steps": 5, "backend": "tensorflow"}
    before = workers.traces()["minimize.tensorflow"]
    post_ok(api, **request, learning_rate=[0.1])
    assert workers.traces()["minimize.tensorflow"] > before
    traced = workers.traces()["minimize.tensorflow"]
    body = post_ok(api, **request | {"start": {"x": 9.0}, "steps": 7}, learning_rate=[0.1, 0.2, 0.3])
    assert workers.traces()["minimize.tensorflow"] == traced  # new rates, start and steps: nothing traced again
    assert [r["steps_taken"] for r in body["runs"]] == [7, 7, 7]


def test_optimizers_are_listed_with_defaults(api):
    listed = {o["name"]: o for o in api.get(f"{ROUTE}/optimizers").json()}
    assert set(listed) == {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lbfgs"}
    assert listed["adam"]["options"]["beta_2"]["default"] == 0.999
    assert listed["lbfgs"]["default_learning_rate"] is None and listed["lbfgs"]["backends"] == ["jax"]


def test_defaults_are_reported(api):
    body = post_ok(api, expression="x**2", start={"x": 1.0}, optimizer="adam", steps=2,
                   options={"beta_1": 0.5})
    assert body["options"] == {"beta_1": 0.5, "beta_2": 0.999, "epsilon": 1e-7}
    assert body["runs"][0]["learning_rate"] == 0.001


# --- bad input --------------------------------------------------------------------------------

BASE = {"expression": "x**2 + y", "start": {"x": 1.0, "y": 2.0}}


@pytest.mark.parametrize(("change", "loc"), [
    ({"optimizer": "newton"}, ["body", "optimizer"]),
    ({"learning_rate": -0.1}, None),
    ({"learning_rate": [0.1, 0.0]}, None),
    ({"learning_rate": []}, None),
    ({"start": {"x": 1.0}}, ["body", "start", "y"]),
    ({"start": {"x": 1.0, "y": 2.0, "z": 3.0}}, ["body", "start", "z"]),
    ({"start": {"x": "NaN", "y": 2.0}}, None),
    ({"start": {"x": 1e300, "y": 2.0}, "dtype": "float32"}, ["body", "start", "x"]),
    ({"steps": -1}, ["body", "steps"]),
    ({"history_every": 0}, ["body", "history_every"]),
    ({"options": {"momentum": 0.9}}, ["body", "options", "momentum"]),
    ({"optimizer": "adam", "options": {"beta_1": 1.0}}, ["body", "options", "beta_1"]),
    ({"optimizer": "rmsprop", "options": {"centered": 1.0}}, ["body", "options", "centered"]),
    ({"optimizer": "lbfgs", "learning_rate": 0.1}, ["body", "learning_rate"]),
    ({"optimizer": "lbfgs", "backend": "tensorflow"}, ["body", "optimizer"]),
    ({"bounds": {"x": [2.0, 1.0]}}, ["body", "bounds", "x"]),
    ({"bounds": {"x": [2.0, None]}}, ["body", "start", "x"]),
    ({"bounds": {"w": [0.0, 1.0]}}, ["body", "bounds", "w"]),
    ({"expression": "__import__('os')"}, ["body", "expression"]),
    ({"expression": "3 + 4", "start": {}}, ["body", "expression"]),
    ({"tolerance": -1.0}, ["body", "tolerance"]),
    ({"dtype": "float16"}, ["body", "dtype"]),
    ({"surprise": 1}, ["body", "surprise"]),
])
def test_bad_input_is_422_naming_the_field(api, change, loc):
    body = assert_problem(api.post(ROUTE, json=BASE | change), 422)
    if loc is not None:
        assert loc in [e["loc"] for e in body["errors"]], body


def test_over_limit_work_is_413_naming_the_limit(api):
    limits = Limits()
    body = assert_problem(api.post(ROUTE, json=BASE | {"steps": limits.max_steps + 1}), 413)
    assert (body["limit"], body["value"]) == ("max_steps", limits.max_steps + 1)
    rates = [0.01] * (limits.max_learning_rates + 1)
    body = assert_problem(api.post(ROUTE, json=BASE | {"learning_rate": rates}), 413)
    assert body["limit"] == "max_learning_rates"
    body = assert_problem(api.post(ROUTE, json=BASE | {"learning_rate": [0.1, 0.2, 0.3],
                                                      "steps": limits.max_steps}), 413)
    assert (body["limit"], body["value"]) == ("max_history_entries", 3 * (limits.max_steps + 1))


@pytest.fixture(scope="module")
def small_api():
    """Tiny minimize limits, to check the history limit at its edge."""
    limits = Limits(max_steps=100, max_learning_rates=2, max_history_entries=22)
    with serving(limits=limits) as client:
        yield client


def test_history_limit_counts_thinned_entries(small_api):
    request = {"expression": "x**2", "start": {"x": 1.0}, "learning_rate": [0.1, 0.2],
               "history_every": 2}
    body = post_ok(small_api, **request, steps=20)  # 2 runs × (0, 2, …, 20) = 22 entries
    assert body["runs"][0]["history"]["step"] == list(range(0, 21, 2))
    body = assert_problem(small_api.post(ROUTE, json=request | {"steps": 21}), 413)  # … and 21
    assert (body["limit"], body["maximum"], body["value"]) == ("max_history_entries", 22, 24)


def test_history_limit_counts_every_number_of_an_entry(api):
    """100,001 entries of 30 variables would be 3.2e6 numbers (JSON of 100s of MB); refused
    before any work, while one variable's 100,001 entries pass the same check."""
    limits = Limits()
    names = [f"v{i}" for i in range(30)]
    request = {"expression": " + ".join(f"{v}**2" for v in names),
               "start": dict.fromkeys(names, 1.0), "steps": limits.max_steps}
    body = assert_problem(api.post(ROUTE, json=request), 413)
    assert (body["limit"], body["maximum"], body["value"]) == (
        "max_history_values", limits.max_history_values, (limits.max_steps + 1) * 32)
    assert 3 * (limits.max_steps + 1) <= limits.max_history_values  # the same for x**2 passes


# --- landscape and client ---------------------------------------------------------------------

def test_landscape_is_the_function_on_a_grid_over_the_paths(api):
    body = post_ok(api, expression=ROSENBROCK, start={"x": -1.2, "y": 1.0}, optimizer="lbfgs",
                   steps=100, landscape=5)  # the L-BFGS test's program: compiled already
    grid = body["landscape"]
    xs, ys = array(grid["x"]["x"]), array(grid["x"]["y"])
    visited_x = path(body["runs"][0], "x")
    assert xs[0] < visited_x.min() and xs[-1] > visited_x.max() and len(xs) == len(ys) == 5
    gx, gy = np.meshgrid(xs, ys)
    np.testing.assert_allclose(array(grid["value"]), (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2, rtol=1e-12)


def test_landscape_refusals(api):
    three = {"expression": "x*y*z", "start": {"x": 1.0, "y": 1.0, "z": 1.0}}
    body = assert_problem(api.post(ROUTE, json=three | {"landscape": 10}), 422)
    assert body["errors"][0]["loc"] == ["body", "landscape"]
    body = assert_problem(api.post(ROUTE, json=BASE | {"landscape": 10_000}), 413)
    assert (body["limit"], body["value"]) == ("max_points", 10_000**2)


def test_unicode_names_in_start_and_bounds_are_read_as_the_expression(api):
    """ℏ in the expression is ħ to Python (NFKC), µ (micro sign) is μ: start and bounds keys
    are read the same; two keys naming one variable are refused, naming both."""
    body = post_ok(api, expression="(ℏ - 1)**2 + µ**2", start={"ℏ": 3.0, "µ": 1.0},
                   bounds={"ℏ": [2.5, None]}, optimizer="sgd", learning_rate=0.25, steps=4)
    assert body["variables"] == ["ħ", "μ"] and body["constants"] == {}
    assert body["runs"][0]["x"]["ħ"] == 2.5  # 3 → 2 projected onto [2.5, ∞)
    problem = assert_problem(api.post(ROUTE, json={"expression": "ℏ**2", "start": {"ℏ": 1.0, "ħ": 2.0}}), 422)
    assert {tuple(e["loc"]) for e in problem["errors"]} == {("body", "start", "ℏ"), ("body", "start", "ħ")}


def test_the_answer_lists_the_constants_used(api):
    body = post_ok(api, expression="(x - pi)**2 * e", start={"x": 0.0}, steps=1)
    assert body["constants"] == {"e": math.e, "pi": math.pi}
