"""Refusals that lead to the fix: what people write by habit (``x^2``, ``2x``, ``ln`` when it
was missing, a typo in a function's name) is answered with what to write instead, at its line
and column; a refused construct is named as people write it; number literals and exponents
that cannot be numbers are refused with the exact value, never with an exception."""

from __future__ import annotations

import pytest

from labcrunch_service.errors import InvalidInput, LabcrunchError, LimitExceeded, did_you_mean
from labcrunch_service.language import compile_expression, compile_program
from labcrunch_service.language.parse import juxtaposed
from labcrunch_service.settings import Limits

LIMITS = Limits()


def refusal(text: str, program: bool = False) -> dict:
    """The first error entry of refusing ``text`` (an expression, or a program's ``f``)."""
    with pytest.raises(InvalidInput) as err:
        compile_program(text, "f", LIMITS) if program else compile_expression(text, LIMITS)
    first = err.value.errors[0]
    assert first["loc"] == (["program"] if program else ["expression"])
    assert f"line {first['line']}, column {first['column']}: {first['msg']}" in err.value.detail
    return first


@pytest.mark.parametrize("text, message, column", [
    ("x^2", "use ** for powers (^ is bitwise xor in Python)", 1),
    ("2x", "multiplication must be written: 2*x", 1),
    ("2 pi x", "multiplication must be written: 2*pi", 1),
    ("sin(x) + 3 y", "multiplication must be written: 3*y", 10),
    ("1.5e3x", "multiplication must be written: 1.5e3*x", 1),
    ("(x + 1)(x - 1)", "multiplication must be written: (x + 1)*(x - 1)", 2),
    ("2(x + 1)", "multiplication must be written: 2*(x + 1)", 1),
    ("~x", "~ (bitwise not) is not part of the language; use `not x` for logic or `-x` to negate", 1),
    ("x & y", "& (bitwise and) is not part of the language; use `and`", 1),
    ("x | y", "| (bitwise or) is not part of the language; use `or`", 1),
    ("x << 2", "the << operator (bit shift) is not part of the language", 1),
    ("x is y", "`is` is not part of the language", 1),
    ("x in y", "`in` (outside `for ... in range(...)`) is not part of the language", 1),
    ("x @ y", "the @ operator (matrix product) is not part of the language", 1),
])
def test_habits_are_answered_with_the_fix(text, message, column):
    first = refusal(text)
    assert first["msg"] == message and (first["line"], first["column"]) == (1, column)


def test_a_refused_unary_operator_names_itself():
    """``~x`` once said "UnaryOp is not part of the language", though -x is a UnaryOp too."""
    assert "UnaryOp" not in refusal("~x")["msg"] and "~" in refusal("~x")["msg"]
    assert compile_expression("-x + +x + (not x)", LIMITS).variables == ("x",)


def test_multiplication_hints_in_programs_point_at_the_line():
    first = refusal("def f(x):\n    y = 2 x\n    return y\n", program=True)
    assert first["msg"] == "multiplication must be written: 2*x" and (first["line"], first["column"]) == (2, 9)
    assert juxtaposed("x if y else z") is None and juxtaposed("'2 x' + y") is None
    assert juxtaposed("for i in range(3):\n    x = not y\n") is None


@pytest.mark.parametrize("text, suggestion", [
    ("lgo(x)", "`log`"), ("sine(x)", "`sin`"), ("Sin(x)", "`sin`"), ("arcsine(x)", "`arcsin`"),
    ("gama(x)", "`gamma`"), ("np.sine(x)", "`np.sin`"), ("jnp.expp(x)", "`jnp.exp`"),
])
def test_unknown_functions_suggest_the_closest_names(text, suggestion):
    first = refusal(text)
    assert first["type"] == "language.name" and f"did you mean {suggestion}" in first["msg"], first


def test_a_call_of_a_variable_suggests_a_product():
    msg = refusal("k(x + 1)")["msg"]
    assert "unknown function 'k'" in msg and "multiplication must be written: k*(x + 1)" in msg
    assert "did you mean" not in refusal("qqq(x)")["msg"]
    assert "did you mean `helper`" in refusal("def helper(a):\n    return a\n\ndef f(x):\n"
                                               "    return helpr(x)\n", program=True)["msg"]


def test_did_you_mean_wording():
    assert did_you_mean("expresion", ["expression", "at", "order"]) == "did you mean `expression`?"
    assert did_you_mean("LOG", ["log", "log2"]) == "did you mean `log`?"
    assert did_you_mean("zzz", ["expression"]) == ""


def test_ln_and_the_other_spellings_are_functions_now():
    for text in ("ln(x)", "log(x, 2)", "acot(x)", "gammaln(x)", "math.gamma(x)", "np.sinc(x)",
                 "scipy.special.xlogy(x, 2)", "tf.math.erfinv(x)", "np.logaddexp(x, 1)", "math.hypot(x, 1)"):
        assert compile_expression(text, LIMITS).variables == ("x",), text


@pytest.mark.parametrize("text, arity", [("log(x, 2, 3)", "1 or 2"), ("hypot(x)", "2"), ("sin()", "1")])
def test_argument_counts(text, arity):
    first = refusal(text)
    assert first["type"] == "language.arity" and f"takes {arity} argument" in first["msg"]


# --- numbers that cannot be numbers ---------------------------------------------------------

@pytest.mark.parametrize("text", [
    "0x" + "f" * 5000 + " * x",  # once a 500: Python's int-to-str digit limit in ast.unparse
    "1" * 5000 + " * x",  # over Python's 4,300-digit limit for decimal literals
    "0b" + "1" * 5000 + " + x", "0o" + "7" * 2000 + " + x", "1" * 400 + " + x",
    "1e999 * x", "9" * 400 + ".0 + x", "1_000" * 100 + " + x", "x ** 0x" + "f" * 300,
    "(0x" + "f" * 5000 + ").real", "(0x" + "f" * 5000 + ")(x)", "x + 0x" + "f" * 5000 + "j",
])
def test_number_literals_beyond_float64_are_refused(text):
    with pytest.raises(LabcrunchError) as err:
        compile_expression(text, LIMITS)
    assert err.value.status in (413, 422) and len(err.value.detail) < 500
    assert err.value.errors[0]["line"] == 1


def test_large_but_finite_literals_are_numbers():
    formula = compile_expression("0x" + "f" * 200 + " * x + 1" + "0" * 300 + " + 1e308 + 1_000.5", LIMITS)
    assert formula.variables == ("x",)


def test_the_exponent_limit_names_the_exact_exponent():
    with pytest.raises(LimitExceeded) as err:
        compile_expression("x**(1e3+1e-9)", LIMITS)
    assert "the exponent 1000.000000001 is too large" in err.value.detail
    assert err.value.extra["value"] == 1000.000000001
    assert compile_expression("x**nan + x**1000", LIMITS).variables == ("x",)
