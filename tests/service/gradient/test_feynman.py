"""The AI Feynman benchmark, verbatim: the 100 equations of the Feynman Lectures and the 20 bonus
equations (tests/data/feynman/), each at points drawn from its published sampling ranges,
against sympy's derivatives evaluated at 40 digits.

* Every formula: value and gradient on both backends. These run eagerly (the path the service
  takes for formulas over ``MAX_COMPILED_OPERATIONS``; the same interpreter and operations):
  compiling 240 formulas costs about a minute of CPU, more than this check is worth.
* A representative subset -- every function the set uses, the variable named ``gamma``, a
  fractional power, up to six variables -- also gets its Hessian, compiled once per backend as
  a request would be.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from labcrunch_service.gradient import derivatives
from labcrunch_service.language import Formula, compile_expression
from labcrunch_service.settings import Limits
from tests.helpers.feynman import formulas

LIMITS = Limits()
FORMULAS = formulas()
BY_NAME = {f.name: f for f in FORMULAS}
#: exp, sqrt and pi; arcsin of a sin; `gamma` as a variable; ln; tanh; sin² over a square in
#: six variables; d**(3/2); arccos of cos over a Lorentz-like denominator.
HESSIAN_SUBSET = ("I.6.2b", "I.26.2", "I.39.11", "I.44.4", "II.35.21", "III.9.52", "test_5",
                  "test_10")
POINTS = 3


def test_the_set_is_the_published_one():
    """100 + 20 formulas, each naming exactly the variables its row lists."""
    assert len(FORMULAS) == 120 and len(BY_NAME) == 120
    assert sum(f.name.startswith("test_") for f in FORMULAS) == 20
    for f in FORMULAS:
        assert set(compile_expression(f.text, LIMITS).variables) == set(f.ranges), f.name
    assert compile_expression(BY_NAME["I.39.11"].text, LIMITS).variables == ("V", "gamma", "pr")


def close(actual: np.ndarray, expected: np.ndarray, relative: float, name: str) -> None:
    """Within ``relative`` of each point's largest component: a component much smaller than the
    largest is a difference of large terms, exact only to the largest's precision."""
    axes = tuple(range(1, expected.ndim))
    scale = np.abs(expected).max(axis=axes, keepdims=True) if axes else np.abs(expected)
    bound = np.broadcast_to(relative * scale + 1e-300, expected.shape)
    np.testing.assert_array_less(np.abs(actual - expected), bound, err_msg=name)


def check(result: derivatives.Derivatives, oracle: tuple, name: str) -> None:
    value, gradient, hessian = oracle
    close(result.value, value, 1e-11, name)
    close(result.gradient, gradient, 1e-10, name)
    if hessian is not None:
        close(result.hessian, hessian, 1e-9, name)
        np.testing.assert_array_equal(result.hessian, np.swapaxes(result.hessian, 1, 2))


@functools.cache
def case(name: str, order: int) -> tuple[Formula, dict[str, np.ndarray], tuple]:
    """The formula, its points and sympy's answer there (computed once for both backends)."""
    f = BY_NAME[name]
    formula = compile_expression(f.text, LIMITS)
    points = f.points(POINTS, seed=FORMULAS.index(f))
    return formula, points, f.oracle(points, formula.variables, order=order)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_every_formula_value_and_gradient(backend, monkeypatch):
    monkeypatch.setattr(derivatives, "MAX_COMPILED_OPERATIONS", {1: 0, 2: 0})
    for f in FORMULAS:
        formula, points, oracle = case(f.name, order=1)
        result = derivatives.differentiate(formula, points, order=1, backend=backend, limits=LIMITS)
        check(result, oracle, f"{f.name} on {backend}")


@pytest.mark.parametrize("name", HESSIAN_SUBSET)
def test_hessians_of_a_representative_subset(name):
    formula, points, oracle = case(name, order=2)
    for backend in ("jax", "tensorflow"):
        result = derivatives.differentiate(formula, points, order=2, backend=backend, limits=LIMITS)
        check(result, oracle, f"{name} on {backend}")
