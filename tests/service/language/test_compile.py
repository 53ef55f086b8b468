"""The maths language on its own: vocabulary, semantics, refusals with positions, limits.

Oracles: numpy/scipy/math for every function, plain Python for operators and programs,
``jax.grad`` of the same Python function for control flow.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from labcrunch_service import progress
from labcrunch_service.errors import ComputeTimeout, InvalidInput, LimitExceeded
from labcrunch_service.language import FUNCTIONS, compile_expression, compile_program
from labcrunch_service.settings import Limits

LIMITS = Limits()
BACKENDS = ("jax", "tensorflow")


def value(text: str, backend: str = "jax", **at: float) -> float:
    formula = compile_expression(text, LIMITS)
    return float(np.asarray(formula.to_callable(backend)(*(at[v] for v in formula.variables))))


def run_program(source: str, backend: str = "jax", function: str = "f", *args: float) -> float:
    return float(np.asarray(compile_program(source, function, LIMITS).to_callable(backend)(*args)))


def _selu(x: float) -> float:
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return scale * (x if x > 0 else alpha * math.expm1(x))


# (call, reference at x = 0.37) -- independent implementations: math, numpy, scipy
REFERENCE = {
    "sin(x)": math.sin, "cos(x)": math.cos, "tan(x)": math.tan, "arcsin(x)": math.asin,
    "arccos(x)": math.acos, "arctan(x)": math.atan, "sinh(x)": math.sinh, "cosh(x)": math.cosh,
    "tanh(x)": math.tanh, "arcsinh(x)": math.asinh, "arccosh(x + 1)": lambda x: math.acosh(x + 1),
    "arctanh(x)": math.atanh, "exp(x)": math.exp, "expm1(x)": math.expm1, "log(x)": math.log,
    "log1p(x)": math.log1p, "log2(x)": math.log2, "log10(x)": math.log10, "sqrt(x)": math.sqrt,
    "cbrt(-x)": lambda x: -(x ** (1 / 3)), "square(x)": lambda x: x * x, "abs(-x)": abs,
    "sign(-x)": lambda x: -1.0, "floor(x + 2)": lambda x: 2.0, "ceil(x)": lambda x: 1.0,
    "sigmoid(x)": special.expit, "relu(-x)": lambda x: 0.0, "elu(-x)": lambda x: math.expm1(-x),
    "gelu(x)": lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))), "selu(-x)": lambda x: _selu(-x),
    "swish(x)": lambda x: x * special.expit(x), "silu(x)": lambda x: x * special.expit(x),
    "softplus(x)": lambda x: math.log1p(math.exp(x)), "erf(x)": math.erf, "erfc(x)": math.erfc,
    "arctan2(x, 2)": lambda x: math.atan2(x, 2), "minimum(x, 0.2)": lambda x: 0.2,
    "maximum(x, 0.2)": lambda x: x, "power(x, 3)": lambda x: x**3,
    "clip(x, 0, 0.3)": lambda x: 0.3, "where(x - 0.37, 5, 7)": lambda x: 7.0,
    "cot(x)": lambda x: 1 / math.tan(x), "sec(x)": lambda x: 1 / math.cos(x),
    "csc(x)": lambda x: 1 / math.sin(x), "arccot(-x)": lambda x: math.atan(-1 / x),
    "arcsec(x + 1)": lambda x: math.acos(1 / (x + 1)), "arccsc(x + 1)": lambda x: math.asin(1 / (x + 1)),
    "coth(x)": lambda x: 1 / math.tanh(x), "sech(x)": lambda x: 1 / math.cosh(x),
    "csch(x)": lambda x: 1 / math.sinh(x), "arccoth(x + 1)": lambda x: math.atanh(1 / (x + 1)),
    "arcsech(x)": lambda x: math.acosh(1 / x), "arccsch(x)": lambda x: math.asinh(1 / x),
    "exp2(x)": lambda x: 2**x, "erfinv(x)": special.erfinv, "sinc(x)": np.sinc,
    "gamma(-x)": lambda x: math.gamma(-x), "lgamma(x)": math.lgamma, "digamma(x)": special.digamma,
    "factorial(x)": lambda x: math.gamma(x + 1), "deg2rad(x)": math.radians,
    "rad2deg(x)": math.degrees, "heaviside(x - 0.37)": lambda x: 0.5,
    "heaviside(x - 0.37, 0.25)": lambda x: 0.25, "log(x, 3)": lambda x: math.log(x, 3),
    "hypot(x, -2)": lambda x: math.hypot(x, 2), "logaddexp(x, 2)": lambda x: np.logaddexp(x, 2),
    "xlogy(x, 2)": lambda x: special.xlogy(x, 2),
}


def test_every_function_has_a_reference():
    called = {text.split("(")[0] for text in REFERENCE}
    assert called == set(FUNCTIONS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text", sorted(REFERENCE))
def test_function_values(text, backend):
    x = 0.37
    assert value(text, backend, x=x) == pytest.approx(REFERENCE[text](x), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("spelling", ["sqrt", "jax.numpy.sqrt", "jnp.sqrt", "np.sqrt", "numpy.sqrt",
                                      "math.sqrt", "tf.sqrt", "tf.math.sqrt"])
def test_dotted_names_resolve(spelling):
    assert value(f"{spelling}(x)", x=2.0) == pytest.approx(math.sqrt(2.0))


def test_constants_and_aliases():
    assert value("pi + e + np.pi + math.e") == pytest.approx(2 * (math.pi + math.e))
    assert value("atan2(x, 1) + asin(0.5) + min(x, 3) + max(x, 3) + pow(x, 2)", x=2.0) == \
        pytest.approx(math.atan2(2, 1) + math.asin(0.5) + 2 + 3 + 4)
    assert math.isnan(value("nan")) and value("-inf") == -math.inf
    assert value("ln(x) + acot(x) + asec(x) + acsc(x) + gammaln(x) + radians(x) + degrees(x)", x=2.0) \
        == pytest.approx(math.log(2) + math.atan(0.5) + math.acos(0.5) + math.asin(0.5) + math.lgamma(2)
                         + math.radians(2) + math.degrees(2))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("a, b", [(7.5, 2.0), (-7.5, 2.0), (7.5, -2.0), (-7.5, -2.0), (5.0, 0.75)])
def test_floor_division_and_modulo_follow_python(a, b, backend):
    assert value("a // b", backend, a=a, b=b) == a // b
    assert value("a % b", backend, a=a, b=b) == pytest.approx(a % b)
    assert value(f"{a} // {b} + {a} % {b}") == pytest.approx(a // b + a % b)  # folded constants


@pytest.mark.parametrize("backend", BACKENDS)
def test_comparisons_logic_and_conditional(backend):
    cases = {"x > 1": 1.0, "x < 1": 0.0, "0 < x < 3": 1.0, "0 < x < 1": 0.0, "x == 2": 1.0,
             "x != 2": 0.0, "not x": 0.0, "x > 1 and x < 3": 1.0, "x > 3 or x < 1": 0.0,
             "(x > 1) * 10 + 1": 11.0, "x**2 if x > 0 else -x": 4.0, "1 if x < 0 else 2": 2.0}
    for text, expected in cases.items():
        assert value(text, backend, x=2.0) == expected, text


def test_variables_are_sorted_and_key_is_normalised():
    f = compile_expression("zeta * sin(alpha) + b**2", LIMITS)
    assert f.variables == ("alpha", "b", "zeta") and not f.is_program
    assert compile_expression("( x-1 )**(2)", LIMITS).key == compile_expression("(x - 1) ** 2", LIMITS).key
    assert compile_expression("x + 1", LIMITS).key != compile_expression("x + 2", LIMITS).key


def test_jax_expression_is_traceable():
    f = compile_expression("sin(x) * y**2 + (x if x > y else y)", LIMITS).to_callable("jax")
    xs, ys = jnp.array([0.1, 2.0], dtype=jnp.float64), jnp.array([1.0, 0.5], dtype=jnp.float64)
    grads = jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1))))(xs, ys)
    expected_x = np.cos([0.1, 2.0]) * np.array([1.0, 0.25]) + np.array([0.0, 1.0])
    expected_y = 2 * np.sin([0.1, 2.0]) * np.array([1.0, 0.5]) + np.array([1.0, 0.0])
    np.testing.assert_allclose(grads[0], expected_x, rtol=1e-12)
    np.testing.assert_allclose(grads[1], expected_y, rtol=1e-12)


def test_float32_stays_float32():
    f = compile_expression("sqrt(x) + 0.1 + pi", LIMITS)
    assert f.to_callable("jax", "float32")(jnp.float32(2.0)).dtype == jnp.float32
    assert f.to_callable("tensorflow", "float32")(np.float32(2.0)).dtype.name == "float32"


# --- programs -------------------------------------------------------------------------------

SEED = """def f(x):
    if x > 0:                        # condition
        for i in range(2):           # for loop
            x += jax.numpy.sqrt(x)
        return x / 10.
    else:
        return f(f(x ** 2)) + 1      # recursion
"""


def seed_f(x):  # the seed notebook's function, written directly
    if x > 0:
        for _ in range(2):
            x += jnp.sqrt(x)
        return x / 10.0
    else:
        return seed_f(seed_f(x**2)) + 1


@pytest.mark.parametrize("x", [3.4, -1.0, 0.25, -2.0])
def test_seed_program_matches_jax_grad_of_python(x):
    f = compile_program(SEED, "f", LIMITS)
    assert f.variables == ("x",) and f.is_program
    ours = f.to_callable("jax")
    assert float(ours(x)) == pytest.approx(float(seed_f(x)), rel=1e-14)
    assert float(jax.grad(ours)(x)) == pytest.approx(float(jax.grad(seed_f)(x)), rel=1e-12)


PROGRAM = '''
def helper(a, b):
    """A docstring is allowed."""
    return a * b + 1

def fact(n):
    return 1 if n < 1 else n * fact(n - 1)

def g(x, y):
    total = 0
    for i in range(1, 7, 2):
        total += helper(x, i)
    if x > 10:
        total = -1
    elif y > 0:
        total *= y
    else:
        total -= y
        pass
    z = w = total / 2
    return z + w + fact(4) + 7 // 2 + 7 % 3
'''


def g_reference(x, y):
    total = 0
    for i in range(1, 7, 2):
        total += x * i + 1
    if x > 10:
        total = -1
    elif y > 0:
        total *= y
    else:
        total -= y
    return total + math.factorial(4) + 7 // 2 + 7 % 3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x, y", [(1.5, 2.0), (1.5, -2.0), (11.0, 1.0)])
def test_program_constructs_follow_python(x, y, backend):
    formula = compile_program(PROGRAM, "g", LIMITS)
    assert formula.variables == ("x", "y")
    assert run_program(PROGRAM, backend, "g", x, y) == pytest.approx(g_reference(x, y), rel=1e-14)


def test_program_under_jit_is_refused_cleanly():
    f = compile_program(SEED, "f", LIMITS).to_callable("jax")
    with pytest.raises(InvalidInput) as err:
        jax.jit(f)(1.0)
    assert err.value.errors[0]["type"] == "language.control-flow"
    assert err.value.errors[0]["line"] == 2


# --- refusals -------------------------------------------------------------------------------

REFUSED_EXPRESSIONS = [
    # text, line, column, type
    ("__import__('os')", 1, 1, "language.name"),
    ("().__class__", 1, 1, "language.unsupported"),
    ("open('x')", 1, 1, "language.name"),
    ("x + (lambda: 1)()", 1, 6, "language.unsupported"),
    ("[x for x in y]", 1, 1, "language.unsupported"),
    ("sum(i for i in y)", 1, 4, "language.unsupported"),
    ("x + y[0]", 1, 5, "language.unsupported"),
    ("x.real", 1, 1, "language.unsupported"),
    ("np.load(x)", 1, 1, "language.name"),
    ("tf.io.read_file(x)", 1, 1, "language.name"),
    ("x + 'a'", 1, 5, "language.unsupported"),
    ("x @ y", 1, 1, "language.unsupported"),
    ("x is y", 1, 1, "language.unsupported"),
    ("np.sin + 1", 1, 1, "language.unsupported"),
    ("jax + 1", 1, 1, "language.name"),
    ("sin(x, y)", 1, 1, "language.arity"),
    ("sin(x=1)", 1, 5, "language.unsupported"),
    ("_x + 1", 1, 1, "language.name"),
    ("(y := 2)", 1, 2, "language.unsupported"),
    ("(x +\n  None)", 2, 3, "language.unsupported"),
    ("x + * 2", 1, 5, "language.syntax"),
    ("1 +", 1, 4, "language.syntax"),
    ("   ", 1, 1, "language.empty"),
    ("True + x", 1, 1, "language.unsupported"),
    ("1j * x", 1, 1, "language.unsupported"),
]


@pytest.mark.parametrize("text, line, column, kind", REFUSED_EXPRESSIONS)
def test_refusals_point_at_the_construct(text, line, column, kind):
    with pytest.raises(InvalidInput) as err:
        compile_expression(text, LIMITS)
    first = err.value.errors[0]
    assert (first["line"], first["column"], first["type"]) == (line, column, kind), err.value.errors
    assert first["loc"] == ["expression"]
    assert f"line {line}, column {column}" in err.value.detail


REFUSED_PROGRAMS = [
    ("import os\ndef f(x):\n    return x\n", 1, 1),
    ("def f(x):\n    while x > 0:\n        x -= 1\n    return x\n", 2, 5),
    ("def f(x):\n    y = [i for i in range(3)]\n    return x\n", 2, 9),
    ("def f(x):\n    return y\n", 2, 12),
    ("def f(x):\n    x[0] = 1\n    return x\n", 2, 5),
    ("def f(x, *a):\n    return x\n", 1, 1),
    ("def f(x):\n    def g(y):\n        return y\n    return g(x)\n", 2, 5),
    ("def f(x):\n    for i in [1, 2]:\n        x += i\n    return x\n", 2, 14),
    ("def f(x):\n    return f(x, x)\n", 2, 12),
    ("def f(x):\n    x\n    return x\n", 2, 5),
    ("x = 1\ndef f(x):\n    return x\n", 1, 1),
    ("def f(x):\n    global y\n    return x\n", 2, 5),
    ("def f(x):\n    pi = 2\n    return x\n", 2, 5),
    ("def f(x):\n    for i in range(3):\n        break\n    return x\n", 3, 9),
]


@pytest.mark.parametrize("source, line, column", REFUSED_PROGRAMS)
def test_program_refusals_point_at_the_construct(source, line, column):
    with pytest.raises(InvalidInput) as err:
        compile_program(source, "f", LIMITS)
    first = err.value.errors[0]
    assert (first["line"], first["column"]) == (line, column), err.value.errors
    assert first["loc"] == ["program"]


def test_unknown_function_name_and_runtime_errors():
    with pytest.raises(InvalidInput) as err:
        compile_program("def g(x):\n    return x\n", "f", LIMITS)
    assert err.value.errors[0]["loc"] == ["function"] and "g" in err.value.detail
    unassigned = "def f(x):\n    if x > 0:\n        y = 1\n    return y\n"
    assert run_program(unassigned, "jax", "f", 1.0) == 1.0
    with pytest.raises(InvalidInput, match="'y' is used before it is assigned"):
        run_program(unassigned, "jax", "f", -1.0)
    with pytest.raises(InvalidInput, match="ended without a return"):
        run_program("def f(x):\n    if x > 0:\n        return x\n", "jax", "f", -1.0)


# --- limits ---------------------------------------------------------------------------------

def limit_of(call) -> str:
    with pytest.raises(LimitExceeded) as err:
        call()
    return err.value.extra["limit"]


def test_text_node_depth_and_exponent_limits():
    small = Limits(max_text_length=50, max_ast_nodes=20, max_nesting_depth=8, max_exponent_literal=10)
    assert limit_of(lambda: compile_expression("x + " * 20 + "x", small)) == "max_text_length"
    assert limit_of(lambda: compile_expression("x+x+x+x+x+x+x+x", small)) == "max_ast_nodes"
    assert limit_of(lambda: compile_expression("(((((((((x)))))))))", small)) == "max_nesting_depth"
    assert limit_of(lambda: compile_expression("-------------x", small)) == "max_nesting_depth"
    assert limit_of(lambda: compile_expression("x ** 11", small)) == "max_exponent_literal"
    assert limit_of(lambda: compile_expression("x ** -(2 * 6)", small)) == "max_exponent_literal"
    assert limit_of(lambda: compile_expression("power(x, 12)", small)) == "max_exponent_literal"
    assert compile_expression("x ** 10 + x ** y", small).variables == ("x", "y")


def test_hostile_texts_refused_by_limits():
    assert limit_of(lambda: compile_expression("9**9**9", LIMITS)) == "max_exponent_literal"
    assert limit_of(lambda: compile_expression("(" * 10_000 + "x" + ")" * 10_000, LIMITS)) == "max_text_length"
    assert limit_of(lambda: compile_expression("(" * 1_000 + "x" + ")" * 1_000, LIMITS)) == "max_nesting_depth"
    assert limit_of(lambda: compile_expression("x+" * 500_000 + "x", LIMITS)) == "max_text_length"
    assert limit_of(lambda: compile_expression("+".join(["x"] * 4000), LIMITS)) in (
        "max_nesting_depth", "max_ast_nodes")


def test_program_limits():
    loop = "def f(x):\n    for i in range(10**12):\n        x += 1\n    return x\n"
    assert limit_of(lambda: compile_program(loop, "f", LIMITS)) == "max_loop_trips"
    nested = "def f(x):\n    for i in range(10000):\n        for j in range(10000):\n            x += 1\n    return x\n"
    assert limit_of(lambda: compile_program(nested, "f", LIMITS)) == "max_operations"
    dynamic = "def f(x):\n    n = 100 * 1000\n    for i in range(n):\n        x += 1\n    return x\n"
    assert limit_of(lambda: run_program(dynamic, "jax", "f", 1.0)) == "max_loop_trips"
    huge = "def f(x):\n    for i in range(10**20):\n        pass\n    return x\n"
    assert limit_of(lambda: compile_program(huge, "f", LIMITS)) == "max_loop_trips"
    bound_by_x = "def f(x):\n    for i in range(x):\n        pass\n    return x\n"
    assert limit_of(lambda: run_program(bound_by_x, "jax", "f", 1e300)) == "max_loop_trips"
    forever = "def f(x):\n    return f(x)\n"
    assert limit_of(lambda: run_program(forever, "jax", "f", 1.0)) == "max_recursion_depth"
    assert limit_of(lambda: run_program(SEED, "jax", "f", 0.0)) == "max_recursion_depth"
    busy = "def f(x, n):\n    for i in range(n):\n        x = x * 1\n    return x\n"
    few_ops = Limits(max_operations=500)
    formula = compile_program(busy, "f", few_ops).to_callable("jax")
    assert float(formula(2.0, 50)) == 2.0
    with pytest.raises(LimitExceeded) as err:
        formula(2.0, 500)
    assert err.value.extra["limit"] == "max_operations"


LONG_LOOP = "def f(x, n):\n    for i in range(n):\n        pass\n    return x\n"


@pytest.mark.parametrize("run", [
    lambda formula: formula.path((1.0, 1e7)),
    lambda formula: formula.to_callable("jax")(1.0, 10**7),
], ids=["path on numpy", "jax"])
def test_a_long_program_loop_stops_at_the_deadline(run):
    """10^7 trips of a loop whose body runs no operation take seconds; past the
    computation's deadline the interpreter stops within a few trips."""
    formula = compile_program(LONG_LOOP, "f", Limits(max_loop_trips=10**7))
    assert formula.path((1.0, 30.0)) == ((30.0,), 2)  # outside a tracked computation it runs
    with progress.tracking(progress.Tracker(deadline=time.monotonic() - 1.0)):
        with pytest.raises(ComputeTimeout):
            run(formula)


def test_recursion_checks_the_deadline():
    calls = "def f(x, n):\n    return x if n <= 0 else f(x, n - 1)\n"
    formula = compile_program(calls, "f", LIMITS)
    assert float(formula.to_callable("jax")(2.0, 60)) == 2.0
    with progress.tracking(progress.Tracker(deadline=time.monotonic() - 1.0)):
        with pytest.raises(ComputeTimeout):
            formula.to_callable("jax")(2.0, 60)


def test_program_path_replay_is_traceable():
    """A point's path, found on plain numbers, makes the program traceable under jit/vmap for
    every point on that path."""
    formula = compile_program(SEED, "f", LIMITS)
    path, operations = formula.path((3.4,))
    assert path == (True, 2.0)  # the if, then the bound of range(2)
    assert operations > 10
    replay = formula.to_callable("jax", path=path)
    xs = jnp.array([3.4, 1.0, 0.1], dtype=jnp.float64)
    grads = jax.jit(jax.vmap(jax.grad(replay)))(xs)
    np.testing.assert_allclose(grads, [float(jax.grad(seed_f)(x)) for x in (3.4, 1.0, 0.1)], rtol=1e-12)
    assert formula.path((-1.0,))[0] != path
