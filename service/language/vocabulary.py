"""The words of the language: its functions, constants, operators and module prefixes, and what
the operators mean on plain numbers (the same for the checker's constant folding and the
interpreter)."""

from __future__ import annotations

import ast
import math
import unicodedata
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from labcrunch_service.errors import InvalidInput

V = TypeVar("V")

#: Whitelisted functions and the numbers of positional arguments each accepts.
FUNCTIONS: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(
        "sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh "
        "cot sec csc arccot arcsec arccsc coth sech csch arccoth arcsech arccsch "
        "exp exp2 expm1 log1p log2 log10 sqrt cbrt square abs sign floor ceil "
        "sigmoid relu elu gelu selu swish silu softplus erf erfc erfinv "
        "sinc gamma lgamma digamma factorial deg2rad rad2deg".split(),
        (1,),
    ),
    **dict.fromkeys("arctan2 minimum maximum power hypot logaddexp xlogy".split(), (2,)),
    **dict.fromkeys("log heaviside".split(), (1, 2)),  # log(x, base); heaviside(x, value at 0)
    **dict.fromkeys("clip where".split(), (3,)),
}

#: Other spellings (Python's math, numpy, scipy, TensorFlow, builtins) of whitelisted functions.
ALIASES: dict[str, str] = {
    "asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2",
    "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh", "absolute": "abs", "fabs": "abs",
    "acot": "arccot", "asec": "arcsec", "acsc": "arccsc", "acoth": "arccoth", "asech": "arcsech",
    "acsch": "arccsch", "ln": "log", "gammaln": "lgamma", "radians": "deg2rad",
    "degrees": "rad2deg", "pow": "power", "min": "minimum", "max": "maximum",
    "clip_by_value": "clip",
}

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}

#: Module prefixes that the seed notebook (and users' habits) put in front of function names.
MODULE_PREFIXES = (
    "jax.numpy.", "jax.nn.", "jax.scipy.special.", "jax.lax.", "jnp.", "numpy.", "np.", "math.",
    "scipy.special.", "tf.math.", "tf.nn.", "tf.", "tensorflow.math.", "tensorflow.nn.", "tensorflow.",
)
MODULE_NAMES = frozenset(p.split(".")[0] for p in MODULE_PREFIXES)

BINARY_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
              ast.Mod: "%", ast.Pow: "**"}
COMPARE_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
SMALL_INT = 2**31  # int literals up to this stay ints (JAX's exact integer powers); larger → float


def dotted(node: ast.AST) -> str | None:
    """``jax.numpy.sqrt`` for an Attribute chain over a Name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def resolve_dotted(name: str) -> str | None:
    """The whitelisted function or constant a dotted name means, or None."""
    for prefix in MODULE_PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            resolved = ALIASES.get(rest, rest)
            if "." not in rest and (resolved in FUNCTIONS or resolved in CONSTANTS):
                return resolved
    return None


def function_name(name: str) -> str | None:
    """The whitelisted function a plain name (or its alias) means, or None."""
    name = ALIASES.get(name, name)
    return name if name in FUNCTIONS else None


def fold(op: str, a: float, b: float) -> float:
    """Arithmetic on two plain numbers with IEEE results (inf/nan) instead of Python exceptions."""
    x, y = np.float64(a), np.float64(b)
    with np.errstate(all="ignore"):
        if op == "+":
            r = x + y
        elif op == "-":
            r = x - y
        elif op == "*":
            r = x * y
        elif op == "/":
            r = x / y
        elif op == "**":
            r = np.power(x, y)
        elif op == "//":
            r = np.floor(x / y)
        else:  # "%"
            r = x - y * np.floor(x / y)
    return float(r)


def literal(value: Any) -> float | int:
    """A number literal as the interpreter uses it: small ints stay ints, the rest floats."""
    if isinstance(value, int) and abs(value) <= SMALL_INT:
        return value
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def normalized(name: str) -> str:
    """A name as Python reads it in source text: NFKC-normalised (``ℏ`` is ``ħ``, the micro sign
    ``µ`` is the Greek ``μ``, ``ﬁ`` is ``fi``)."""
    return unicodedata.normalize("NFKC", name)


def normalized_keys(mapping: Mapping[str, V], loc: tuple[Any, ...]) -> dict[str, V]:
    """``mapping`` (values by variable name, e.g. a request's ``at``) with its keys normalised as
    the expression's names are (:func:`normalized`), so that ``{"ℏ": 1}`` gives ``ℏ`` in
    ``ℏ * ω`` its value. Two keys that name the same variable are a 422 naming both."""
    out: dict[str, V] = {}
    spelled: dict[str, str] = {}
    for key, value in mapping.items():
        name = normalized(key)
        if name in spelled:
            both = f"{spelled[name]!r} and {key!r}"
            raise InvalidInput(
                f"{both} in {'.'.join(map(str, loc))} are the same name {name!r} once normalised "
                "as Python reads names (Unicode NFKC); give it one value.",
                errors=[{"loc": [*loc, k], "msg": f"the same variable as {other!r} (both are {name!r})",
                         "type": "duplicate_variable"}
                        for k, other in ((spelled[name], key), (key, spelled[name]))])
        spelled[name] = key
        out[name] = value
    return out
