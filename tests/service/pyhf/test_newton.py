"""The bounded Newton minimiser alone (no pyhf), against closed forms and scipy's L-BFGS-B."""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from labcrunch_service.pyhf import newton


def poisson_nll(x, data):
    """−2 ln L of three Poisson counts with rates (a·s + b·c) and a Gaussian constraint on c:
    smooth, convex near its minimum, undefined (NaN) where a rate goes negative."""
    s, b = jnp.asarray([3.0, 5.0, 8.0]), jnp.asarray([10.0, 9.0, 7.0])
    rates = x[0] * s + x[1] * b + x[2]
    return 2.0 * jnp.sum(rates - data[:3] * jnp.log(rates)) + ((x[1] - data[3]) / 0.1) ** 2 + x[2] ** 2


def value_grad_hessian(x, data):
    value, grad = jax.value_and_grad(poisson_nll)(x, data)
    return value, grad, jax.hessian(poisson_nll)(x, data)


@cache
def compiled():
    return jax.jit(newton.program(poisson_nll, value_grad_hessian))


DATA = np.array([14.0, 16.0, 18.0, 1.05])
LOW, HIGH = np.array([0.0, 0.5, -5.0]), np.array([10.0, 2.0, 5.0])


def oracle(data, low=LOW, high=HIGH, fixed=(), x0=(1.0, 1.0, 0.0)):
    """scipy's L-BFGS-B, run to its tightest tolerances, on the same function (numpy)."""
    f = jax.jit(poisson_nll)
    g = jax.jit(jax.grad(poisson_nll))
    x0 = np.asarray(x0, dtype=np.float64)
    bounds = [(v, v) if i in fixed else (lo, hi) for i, (v, lo, hi) in enumerate(zip(x0, low, high, strict=True))]
    found = minimize(lambda x: float(f(x, data)), x0, jac=lambda x: np.asarray(g(x, data)), bounds=bounds,
                     method="L-BFGS-B", options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 10_000})
    return found.x, found.fun


def stepwise(x0, data, low=LOW, high=HIGH, fixed=np.zeros(3, dtype=bool)):
    """The Python-driven loop on an exact gradient and a finite-difference Hessian."""
    vg = jax.jit(jax.value_and_grad(poisson_nll))

    def evaluate(x):
        value, grad = vg(x, data)
        return float(value), np.asarray(grad)

    def hessian(x, free, precise):
        return newton.finite_difference_hessian(lambda p: evaluate(p)[1], x, low, high, free, precise)

    return newton.stepwise(evaluate, hessian, x0, low, high, fixed)


def test_interior_minimum_and_its_hessian():
    result = compiled()(np.array([1.0, 1.0, 0.0]), DATA, LOW, HIGH, np.zeros(3, dtype=bool))
    best, value = oracle(DATA)
    assert bool(result.converged) and int(result.iterations) < 20
    np.testing.assert_allclose(result.pars, best, atol=1e-7)
    assert float(result.value) <= value + 1e-10  # at least as low as scipy's tightest answer
    np.testing.assert_allclose(result.hessian, jax.hessian(poisson_nll)(result.pars, DATA), rtol=1e-12)
    assert float(result.decrement) <= newton.TOLERANCE


def test_active_bound_and_a_fixed_parameter_outside_its_bounds():
    """Few counts push the first parameter onto its lower bound; the third is held at 6, outside
    its box [−5, 5] (as a scanned parameter may be): it stays there."""
    data = np.array([2.0, 3.0, 4.0, 1.0])
    fixed = np.array([False, False, True])
    result = compiled()(np.array([1.0, 1.0, 6.0]), data, LOW, HIGH, fixed)
    assert bool(result.converged)
    assert float(result.pars[0]) == 0.0 and float(result.pars[2]) == 6.0
    best, value = oracle(data, fixed=(2,), x0=(1.0, 1.0, 6.0))
    np.testing.assert_allclose(result.pars, best, atol=1e-7)
    assert float(result.value) <= value + 1e-10


def test_stepwise_driver_agrees_with_the_program():
    """The same iterations from Python, the Hessian from finite differences of the exact gradient."""
    x0 = np.array([2.0, 1.5, 1.0])
    program = compiled()(x0, DATA, LOW, HIGH, np.zeros(3, dtype=bool))
    loop = stepwise(x0, DATA)
    assert bool(loop.converged)
    np.testing.assert_allclose(loop.pars, program.pars, atol=1e-9)
    assert float(loop.value) == pytest.approx(float(program.value), rel=1e-13)
    np.testing.assert_allclose(loop.hessian, program.hessian, rtol=1e-8)


def test_vmapped_program_equals_one_fit_at_a_time():
    batch = jax.jit(jax.vmap(newton.program(poisson_nll, value_grad_hessian), in_axes=(0, 0, None, None, 0)))
    rng = np.random.default_rng(1)
    data = np.column_stack([rng.poisson([20.0, 20.0, 20.0], size=(4, 3)), np.full(4, 1.0)]).astype(float)
    starts = np.tile([1.0, 1.0, 0.0], (4, 1))
    fixed = np.zeros((4, 3), dtype=bool)
    fixed[1, 2] = True
    together = batch(starts, data, LOW, HIGH, fixed)
    for k in range(4):
        alone = compiled()(starts[k], data[k], LOW, HIGH, fixed[k])
        np.testing.assert_allclose(together.pars[k], alone.pars, atol=1e-12)
        assert bool(together.converged[k])


def test_saddle_start_still_descends():
    """At a point where the Hessian is indefinite, |eigenvalues| give a descent step: the Newton
    step proper would climb. f = x⁴ − 2x² + y² from x = 0.3 (f'' < 0 there) reaches x = 1."""

    def f(x, _):
        return x[0] ** 4 - 2 * x[0] ** 2 + x[1] ** 2

    def vgh(x, data):
        value, grad = jax.value_and_grad(f)(x, data)
        return value, grad, jax.hessian(f)(x, data)

    result = jax.jit(newton.program(f, vgh))(np.array([0.3, 0.5]), np.zeros(1), np.full(2, -3.0), np.full(2, 3.0),
                                             np.zeros(2, dtype=bool))
    assert bool(result.converged)
    np.testing.assert_allclose(result.pars, [1.0, 0.0], atol=1e-9)


def test_a_start_where_the_objective_is_undefined_does_not_converge():
    """Rates below zero: NaN everywhere near the start, no step can be accepted."""
    result = compiled()(np.array([-1.0, -1.0, -4.0]), DATA, np.full(3, -5.0), np.full(3, -0.5),
                        np.zeros(3, dtype=bool))
    assert not bool(result.converged)
    loop = stepwise(np.array([-1.0, -1.0, -4.0]), DATA, np.full(3, -5.0), np.full(3, -0.5))
    assert not bool(loop.converged)


def test_finite_difference_hessian_inside_and_at_a_bound():
    x = np.array([1.2, 1.1, 0.3])
    exact = np.asarray(jax.hessian(poisson_nll)(x, DATA))
    gradient = jax.jit(jax.grad(poisson_nll))
    free = np.ones(3, dtype=bool)
    inside = newton.finite_difference_hessian(lambda p: np.asarray(gradient(p, DATA)), x, LOW, HIGH, free)
    np.testing.assert_allclose(inside, exact, rtol=1e-9)
    # x[0] on its lower bound: a one-sided stencil (fourth order) that never steps below it.
    at_bound = x.copy()
    at_bound[0] = 0.1
    seen = []

    def recording(p):
        seen.append(p[0])
        return np.asarray(gradient(p, DATA))

    one_sided = newton.finite_difference_hessian(recording, at_bound, np.array([0.1, 0.5, -5.0]), HIGH, free)
    assert min(seen) >= 0.1
    np.testing.assert_allclose(one_sided, jax.hessian(poisson_nll)(at_bound, DATA), rtol=1e-8)
    fixed_out = newton.finite_difference_hessian(lambda p: np.asarray(gradient(p, DATA)), x, LOW, HIGH,
                                                 np.array([True, False, True]))
    assert np.all(fixed_out[1] == 0) and np.all(fixed_out[:, 1] == 0)
