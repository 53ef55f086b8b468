"""The vocabulary's newer functions and the rules both backends share, against sympy at 40
digits: values, first and second derivatives on JAX and TensorFlow.

The cases are differentiated eagerly (``MAX_COMPILED_OPERATIONS`` = 0: the same interpreter and
operations a compiled request runs, without paying a compile per case); the AI Feynman set
(tests/service/gradient/test_feynman.py) covers the compiled path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from labcrunch_service.gradient import derivatives
from labcrunch_service.language import FUNCTIONS, compile_expression
from labcrunch_service.settings import Limits

LIMITS = Limits()
BACKENDS = ("jax", "tensorflow")
X, Y = sp.symbols("x y", real=True)

# (text, the same in sympy, points) -- points where each is smooth; ties and zeros included where
# the function is smooth through them (hypot(2, 2), logaddexp(2, 2), arccot(0), sinc near 0)
CASES = [
    ("ln(x)", sp.log(X), {"x": [0.3, 2.5]}),
    ("log(x, 3)", sp.log(X) / sp.log(3), {"x": [0.3, 2.5]}),
    ("log(x, y)", sp.log(X) / sp.log(Y), {"x": [0.3, 2.5], "y": [2.0, 10.0]}),
    ("exp2(x)", 2**X, {"x": [-1.5, 0.5, 3.0]}),
    ("cot(x)", sp.cot(X), {"x": [-2.0, 0.4, 1.3]}),
    ("sec(x)", sp.sec(X), {"x": [-2.0, 0.4, 1.3]}),
    ("csc(x)", sp.csc(X), {"x": [-2.0, 0.4, 1.3]}),
    ("arccot(x)", sp.acot(X), {"x": [-2.0, -0.3, 0.0, 0.4, 3.0]}),
    ("arcsec(x)", sp.asec(X), {"x": [-3.0, 1.5, 4.0]}),
    ("arccsc(x)", sp.acsc(X), {"x": [-3.0, 1.5, 4.0]}),
    ("coth(x)", sp.coth(X), {"x": [-2.0, 0.5]}),
    ("sech(x)", sp.sech(X), {"x": [-2.0, 0.0, 0.5]}),
    ("csch(x)", sp.csch(X), {"x": [-2.0, 0.5]}),
    ("arccoth(x)", sp.acoth(X), {"x": [-3.0, 1.5]}),
    ("arcsech(x)", sp.asech(X), {"x": [0.2, 0.9]}),
    ("arccsch(x)", sp.acsch(X), {"x": [-2.0, 0.5]}),
    ("sinc(x)", sp.sin(sp.pi * X) / (sp.pi * X), {"x": [-1.3, 0.25, 0.003, 0.0031831, 2.5]}),
    ("hypot(x, y)", sp.sqrt(X**2 + Y**2), {"x": [3.0, -1e-3, 0.0, 2.0, 1e200],
                                            "y": [4.0, 2.0, 1.5, 2.0, 1e200]}),
    ("logaddexp(x, y)", sp.log(sp.exp(X) + sp.exp(Y)), {"x": [0.5, -40.0, 2.0, 800.0],
                                                        "y": [1.5, 3.0, 2.0, 799.0]}),
    ("gamma(x)", sp.gamma(X), {"x": [0.5, 3.7, -0.5, -1.5]}),
    ("lgamma(x)", sp.loggamma(X), {"x": [0.5, 3.7]}),
    ("digamma(x)", sp.digamma(X), {"x": [0.5, 3.7, -0.5]}),
    ("factorial(x)", sp.gamma(X + 1), {"x": [0.5, 4.0]}),
    ("heaviside(x)", sp.Heaviside(X), {"x": [-1.0, 0.0, 2.0]}),
    ("deg2rad(x)", X * sp.pi / 180, {"x": [-30.0, 90.0]}),
    ("rad2deg(x)", X * 180 / sp.pi, {"x": [-0.5, 2.0]}),
    ("erfinv(x)", sp.erfinv(X), {"x": [-0.9, 0.1, 0.5]}),
    ("xlogy(x, y)", X * sp.log(Y), {"x": [0.5, -2.0, 0.0], "y": [2.0, 0.5, 3.0]}),
    ("x**y", X**Y, {"x": [0.5, 2.0], "y": [0.3, -1.7]}),
    ("cbrt(x)", sp.sign(X) * sp.Abs(X) ** sp.Rational(1, 3), {"x": [-8.0, 0.3, 27.0]}),
    ("abs(x)", sp.Abs(X), {"x": [-1.5, 2.0]}),
]


BATCH = 8  # every case is a batch of this many points: one shape, so JAX's eager kernels are reused


def differentiate(text: str, at: dict, backend: str, order: int = 2) -> derivatives.Derivatives:
    """``text`` at the points ``at`` (repeated to BATCH points; the answer has as many rows as
    ``at`` has points)."""
    count = len(next(iter(at.values())))
    formula = compile_expression(text, LIMITS)
    columns = {k: np.resize(np.asarray(v, float), BATCH) for k, v in at.items()}
    out = derivatives.differentiate(formula, columns, order=order, backend=backend, limits=LIMITS)
    return derivatives.Derivatives(out.variables, out.value[:count], out.gradient[:count],
                                   None if out.hessian is None else out.hessian[:count], True,
                                   out.constants)


def oracle(expression: sp.Expr, at: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sympy's value, gradient and Hessian at 40 digits from the points' exact binary values,
    rounded to float64 (DiracDelta, the derivative of a step away from it, is 0)."""
    symbols = sorted(expression.free_symbols, key=lambda s: s.name)
    gradient = [sp.diff(expression, s) for s in symbols]
    entries = [expression, *gradient, *(sp.diff(g, s) for g in gradient for s in symbols)]
    entries = [e.replace(sp.DiracDelta, lambda *a: sp.Integer(0)) for e in entries]
    n, count = len(symbols), len(at["x"])
    table = np.array([[float(e.subs({s: sp.Float(at[s.name][i], 40) for s in symbols}).evalf(40))
                       for e in entries] for i in range(count)])
    return table[:, 0], table[:, 1:1 + n], table[:, 1 + n:].reshape(count, n, n)


@pytest.fixture(autouse=True)
def eager(monkeypatch):
    monkeypatch.setattr(derivatives, "MAX_COMPILED_OPERATIONS", {1: 0, 2: 0})


@pytest.mark.parametrize("text, expression, at", CASES, ids=[c[0] for c in CASES])
def test_functions_match_sympy(text, expression, at):
    value, gradient, hessian = oracle(expression, at)
    for backend in BACKENDS:
        out = differentiate(text, at, backend)
        where = f"{text} on {backend}"
        np.testing.assert_allclose(out.value, value, rtol=1e-13, atol=1e-300, err_msg=where)
        np.testing.assert_allclose(out.gradient, gradient, rtol=1e-11, atol=1e-13, err_msg=where)
        np.testing.assert_allclose(out.hessian, hessian, rtol=1e-9, atol=1e-10, err_msg=where)


def test_every_new_function_has_a_sympy_case():
    covered = {t.split("(")[0] for t, _, _ in CASES} | {"log", "heaviside"}
    new = ("cot sec csc arccot arcsec arccsc coth sech csch arccoth arcsech arccsch exp2 sinc gamma "
           "lgamma digamma factorial deg2rad rad2deg erfinv hypot logaddexp xlogy").split()
    assert set(new) <= covered and set(new) <= set(FUNCTIONS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sinc_is_numpys_and_smooth_at_zero(backend):
    """sin(πx)/(πx), 1 at 0, with sinc'(0) = 0 and sinc''(0) = -π²/3 (its Taylor series)."""
    out = differentiate("sinc(x)", {"x": [0.0, 1.0, 0.5]}, backend)
    np.testing.assert_allclose(out.value, np.sinc([0.0, 1.0, 0.5]), atol=1e-16)
    series = sp.series(sp.sin(sp.pi * X) / (sp.pi * X), X, 0, 4).removeO()
    assert out.gradient[0, 0] == 0.0
    assert out.hessian[0, 0, 0] == pytest.approx(float(2 * series.coeff(X, 2)), rel=1e-15)


# --- the rules both backends share ----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_power_of_a_negative_base_is_real_arithmetic(backend):
    """x**y at x < 0: the value where y is whole, ∂/∂x = y·x**(y-1) and ∂²/∂x² from sympy;
    every derivative in y is NaN (sympy's is not real: x**y·ln x); NaN where y is not whole."""
    out = differentiate("x**y", {"x": [-1.0, -2.0, -2.0], "y": [2.0, 3.0, 0.5]}, backend)
    for i, (x, y) in enumerate([(-1, 2), (-2, 3)]):
        point = {X: x, Y: y}
        assert out.value[i] == float((X**Y).subs(point))
        assert out.gradient[i, 0] == float(sp.diff(X**Y, X).subs(point))
        assert out.hessian[i, 0, 0] == float(sp.diff(X**Y, X, 2).subs(point))
        assert not sp.diff(X**Y, Y).subs(point).is_real
        assert np.isnan(out.gradient[i, 1]) and np.isnan(out.hessian[i, 1]).all()
        assert np.isnan(out.hessian[i, :, 1]).all()
    assert np.isnan(out.value[2]) and np.isnan(out.gradient[2]).all()
    assert out.value[0] == 1.0 and out.gradient[0, 0] == -2.0 and out.hessian[0, 0, 0] == 2.0
    at_zero = differentiate("x**y", {"x": [0.0], "y": [2.5]}, backend)
    assert at_zero.value[0] == 0.0 and at_zero.gradient.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text, polynomial", [("x**2", X**2), ("x**2.0", X**2), ("power(x, 3)", X**3),
                                              ("x**0", sp.Integer(1)), ("x**1", X),
                                              ("x**-2", X**-2), ("(-x)**3", -X**3)])
def test_whole_constant_exponents_are_polynomials(text, polynomial, backend):
    xs = [-1.5, 0.0, 2.0] if text != "x**-2" else [-1.5, 2.0]
    out = differentiate(text, {"x": xs}, backend)
    for i, x in enumerate(xs):
        assert out.value[i] == pytest.approx(float(polynomial.subs(X, x)), rel=1e-15)
        assert out.gradient[i, 0] == pytest.approx(float(sp.diff(polynomial, X).subs(X, x)), rel=1e-15)
        assert out.hessian[i, 0, 0] == pytest.approx(float(sp.diff(polynomial, X, 2).subs(X, x)), rel=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kinks_take_the_symmetric_derivative(backend):
    """abs'(0) = 0 (the subgradient in the middle); a tie in maximum/minimum gives each side
    half, so maximum(x, y) at x = y moves by 1 when both do; relu'(0) = 0."""
    out = differentiate("abs(x)", {"x": [0.0, -3.0, 2.0]}, backend)
    assert out.gradient[:, 0].tolist() == [0.0, -1.0, 1.0] and not out.hessian.any()
    for text in ("maximum(x, y)", "minimum(x, y)", "clip(x, y, 5)"):
        tie = differentiate(text, {"x": [1.0], "y": [1.0]}, backend)
        assert tie.value[0] == 1.0 and tie.gradient.tolist() == [[0.5, 0.5]], text
    assert differentiate("relu(x)", {"x": [0.0]}, backend).gradient[0, 0] == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessians_are_symmetric_by_construction(backend):
    """The mixed partials of x**y·sin(x·y) come out of different computations; the answer's
    matrix is symmetric exactly, compiled and eager."""
    at = {"x": [0.7, 1.9, 2.5], "y": [1.3, -0.4, 0.25]}
    for eager in (True, False):
        limits = {1: 0, 2: 0} if eager else {1: 2_000, 2: 200}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(derivatives, "MAX_COMPILED_OPERATIONS", limits)
            hessian = differentiate("x**y * sin(x * y) + hypot(x, y)**3", at, backend).hessian
        np.testing.assert_array_equal(hessian, np.swapaxes(hessian, 1, 2))
        expected = oracle(X**Y * sp.sin(X * Y) + sp.sqrt(X**2 + Y**2)**3, at)[2]
        np.testing.assert_allclose(hessian, expected, rtol=1e-11)


# every function, one, two or three arguments, at ordinary points, zeros, ties and edges
POINTS_1 = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.5]
POINTS_2 = ([-2.0, 0.0, 0.0, 1.0, 2.0, -1.0, 3.0, 0.5], [-2.0, 0.0, 2.0, 1.0, -1.0, 0.0, 2.0, 1.5])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_both_backends_agree_everywhere(name):
    """Every function on both backends at the same points -- kinks, ties, zeros, edges of the
    domain and beyond: values equal within rounding with NaN and ±inf in the same places;
    derivatives too wherever the value is finite (outside the domain they are NaN on both; at
    a pole, where the value is infinite, the backends' own formulas may give ±inf or NaN)."""
    arity = min(FUNCTIONS[name])
    variables = ["x", "y", "z"][:arity]
    columns = [POINTS_1] if arity == 1 else [*POINTS_2, [1.0] * 8][:arity]
    at = dict(zip(variables, columns, strict=True))
    text = f"{name}({', '.join(variables)})"
    results = [differentiate(text, at, backend) for backend in BACKENDS]
    values = [r.value for r in results]
    finite = np.isfinite(values[0]) & np.isfinite(values[1])
    for field in ("value", "gradient", "hessian"):
        a, b = (np.asarray(getattr(r, field)) for r in results)
        if field != "value":
            a, b = a[finite], b[finite]
            assert np.isnan(getattr(results[0], field)[np.isnan(values[0])]).all(), text
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{field} of {text}")
        infinite = np.isinf(a) | np.isinf(b)
        np.testing.assert_array_equal(a[infinite], b[infinite], err_msg=f"{field} of {text}")
        usual = np.isfinite(a) & np.isfinite(b)
        np.testing.assert_allclose(a[usual], b[usual], rtol=1e-12, atol=1e-13,
                                   err_msg=f"{field} of {text}")


def test_a_called_name_is_a_function_and_a_bare_one_a_variable():
    """1/(gamma - 1) uses gamma as a variable; gamma(x) calls the function: both in one text."""
    formula = compile_expression("gamma(gamma) + 1 / (gamma - 1) + e * pi", LIMITS)
    assert formula.variables == ("gamma",)
    assert formula.constants == {"e": math.e, "pi": math.pi}
    out = differentiate("gamma(gamma) + 1 / (gamma - 1)", {"gamma": [3.0]}, "jax", order=1)
    assert out.value[0] == pytest.approx(2.0 + 0.5)
    assert out.gradient[0, 0] == pytest.approx(2.0 * float(sp.digamma(3)) - 0.25)
