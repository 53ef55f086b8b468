"""The words of the language: its functions, constants, operators and module prefixes, and what
the operators mean on plain numbers (the same for the checker's constant folding and the
interpreter)."""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np

#: Whitelisted functions and how many positional arguments each takes.
FUNCTIONS: dict[str, int] = {
    **dict.fromkeys(
        "sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh exp expm1 log "
        "log1p log2 log10 sqrt cbrt square abs sign floor ceil sigmoid relu elu gelu selu swish "
        "silu softplus erf erfc".split(),
        1,
    ),
    **dict.fromkeys("arctan2 minimum maximum power".split(), 2),
    **dict.fromkeys("clip where".split(), 3),
}

#: Other spellings (Python's math, TensorFlow, builtins) of whitelisted functions.
ALIASES: dict[str, str] = {
    "asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2",
    "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh", "absolute": "abs", "fabs": "abs",
    "pow": "power", "min": "minimum", "max": "maximum", "clip_by_value": "clip",
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
