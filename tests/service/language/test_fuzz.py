"""Token soup through the language: every text is either refused with a 4xx domain error or
differentiated -- never any other exception (which the service would turn into a 500)."""

from __future__ import annotations

import math

import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from labcrunch_service.errors import LabcrunchError
from labcrunch_service.gradient import derivatives
from labcrunch_service.language import FUNCTIONS, compile_expression, compile_program
from labcrunch_service.settings import Limits

LIMITS = Limits()
TOKENS = ["x", "y", "1", "2.5", "1e308", "0", "-", "+", "*", "/", "//", "%", "**", "(", ")", ",",
          "sin(", "log(", "where(", "clip(", "np.sqrt(", "tf.math.exp(", "pi", " if ", " else ",
          " and ", " or ", "not ", "<", "==", "arctan2(", "lambda", "[", "]", ".", "_", "'", "9",
          "power(", "sqrt(", "relu(", "__class__", "inf", "nan", ":", "=", "\n"]


@given(st.lists(st.sampled_from(TOKENS), max_size=20),
       st.floats(allow_nan=True, allow_infinity=True, width=64))
@hypothesis.settings(max_examples=120, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
def test_token_soup_is_refused_or_differentiated(tokens, point):
    text = "".join(tokens)
    try:
        formula = compile_expression(text, LIMITS)
    except LabcrunchError as exc:
        assert 400 <= exc.status < 500 and exc.detail
        return
    at = {v: point for v in formula.variables}
    result = derivatives.differentiate(formula, at, order=2, limits=LIMITS)
    assert result.value.shape == () and result.hessian.shape == (len(at), len(at))
    if math.isfinite(point) and formula.variables == ("x",) and text.strip() == "x":
        assert float(result.value) == point


STATEMENTS = ["    y = x * 2\n", "    x += 1\n", "    if x > 0:\n        x = -x\n", "    return x\n",
              "    for i in range(3):\n        x = x * 0.5 + i\n", "    return f(x - 1)\n",
              "    if x < 1:\n        return 1\n", "    return g(x)\n", "    x **= 2\n",
              "    return y\n", "    pass\n", "    while x:\n        x = 0\n"]


@given(st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=6),
       st.floats(min_value=-5, max_value=5))
@hypothesis.settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
def test_statement_soup_is_refused_or_differentiated(statements, point):
    source = "def g(x):\n    return x * x\n\ndef f(x):\n" + "".join(statements)
    try:
        formula = compile_program(source, "f", LIMITS)
        derivatives.differentiate(formula, {"x": point}, order=2, limits=LIMITS)
    except LabcrunchError as exc:
        assert 400 <= exc.status < 500 and exc.detail


ONE_ARG = sorted(name for name, arities in FUNCTIONS.items() if 1 in arities)
TWO_ARGS = sorted(name for name, arities in FUNCTIONS.items() if 2 in arities)
LEAVES = st.sampled_from(["x", "y", "0", "1", "2.5", "-3", "1e308", "inf", "nan", "pi", "2"])


def _grow(children):
    return st.one_of(
        st.tuples(st.sampled_from(ONE_ARG), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(TWO_ARGS), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", "==", "and", "or"]),
                  children).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]}) if ({t[1]}) else ({t[2]})"),
        st.tuples(st.sampled_from(["clip", "where"]), children, children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]}, {t[3]})"),
        children.map(lambda c: f"-({c})"), children.map(lambda c: f"not ({c})"),
    )


EXPRESSIONS = st.recursive(LEAVES, _grow, max_leaves=10)
POINTS = {"x": [-2.0, 0.0, 0.5, 1e308, float("nan"), float("inf")],
          "y": [1.0, -0.0, 3.0, -1e308, 2.0, float("-inf")]}


@pytest.mark.parametrize("backend, examples", [("jax", 40), ("tensorflow", 12)])
def test_grammatical_expressions_never_crash(backend, examples):
    """Every function and operator, nested, at ordinary, zero, huge and non-finite points:
    derivatives come back (NaN/inf allowed), or a 4xx domain error -- nothing else."""

    @given(EXPRESSIONS)
    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    def check(text):
        try:
            formula = compile_expression(text, LIMITS)
            at = {v: POINTS[v] for v in formula.variables}
            result = derivatives.differentiate(formula, at, order=2, backend=backend, limits=LIMITS)
        except LabcrunchError as exc:
            assert 400 <= exc.status < 500, (text, exc.detail)
            return
        n = len(formula.variables)
        assert result.gradient.shape == ((6, n) if n else (0,))

    check()
