"""Compiling text into a :class:`Formula`: parse, check, and the object that runs it.

A :class:`Formula` is a checked expression or program; :meth:`Formula.to_callable` gives a
function of its variables on a backend, :meth:`Formula.path` and
:meth:`Formula.branch_conditions` the decisions it takes at given points (found on numpy).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput
from labcrunch_service.language.check import check_expression, check_program, node_count
from labcrunch_service.language.diagnostics import At, over_limit
from labcrunch_service.language.interpreter import Interpreter
from labcrunch_service.language.ops import backend_ops
from labcrunch_service.language.parse import parse
from labcrunch_service.language.vocabulary import CONSTANTS, MODULE_NAMES, dotted, resolve_dotted
from labcrunch_service.settings import Limits


@dataclass(frozen=True)
class Formula:
    """A checked expression or program, ready to run on a backend.

    ``variables``: free variables (expressions: sorted by name; programs: the function's
    parameters in order). ``is_program``: True when Python control flow runs point by point.
    ``key``: normalised text, equal for texts that differ only in spacing or redundant brackets.
    ``loc``: the field the text came in, as run-time errors name it.
    """

    variables: tuple[str, ...]
    is_program: bool
    key: str
    tree: ast.AST = field(repr=False, compare=False)
    function: str | None = None
    limits: Limits = field(default_factory=Limits, repr=False, compare=False)
    loc: tuple[str, ...] = field(default=("expression",), repr=False, compare=False)

    @functools.cached_property
    def constants(self) -> dict[str, float]:
        """The named constants the text uses (``pi``, ``e``, ``inf``, ``nan``, also spelled
        ``np.pi``, ...), with their values, sorted by name: ``e`` is Euler's number, not the
        elementary charge, and an answer says so."""
        return {name: CONSTANTS[name] for name in sorted(constants_used(self.tree))}

    def to_callable(self, backend: str, dtype: str = "float64",
                    path: tuple[Any, ...] | None = None) -> Callable[..., Any]:
        """``fn(*values)`` (in ``variables`` order) → a scalar tensor of ``backend``.

        For JAX expressions the function is traceable under ``jit``/``vmap``/``grad``; without a
        ``path``, ``a if c else b`` is ``where(c, a, b)``. A program needs concrete values for its
        ``if``/``range`` (``grad``/``jvp`` of concrete inputs, TF eager mode) -- unless it is
        given the ``path`` of one point (see :meth:`path`): then it replays those decisions
        instead of taking them, and is traceable like an expression, valid for every point that
        takes the same path. For an expression, ``path`` holds one bool per :attr:`branches`
        node (see :meth:`branch_conditions`): only the side taken is computed, so the other
        side's derivative cannot leak NaN into the gradient as it does through ``where``.
        """
        ops = backend_ops(backend, dtype)

        def run(*values: Any) -> Any:
            return ops.tensor(Interpreter(self, ops, replay=path).run(values))

        run.__name__ = f"formula_{backend}"
        return run

    @functools.cached_property
    def branches(self) -> tuple[ast.IfExp, ...]:
        """An expression's ``a if c else b`` nodes, in a fixed order (empty for programs)."""
        if self.is_program:
            return ()
        return tuple(n for n in ast.walk(self.tree) if isinstance(n, ast.IfExp))

    def branch_conditions(self, columns: list[np.ndarray], dtype: str = "float64") -> np.ndarray:
        """For an expression with ``a if c else b``: which side each point takes, shape
        (points, len(branches)), found on plain numpy numbers for the whole batch at once
        (every side is evaluated, so nested conditions are known everywhere)."""
        interpreter = Interpreter(self, backend_ops("numpy", dtype), record=True)
        with np.errstate(all="ignore"):
            interpreter.run(tuple(columns))
        shape = np.broadcast_shapes(*(np.shape(c) for c in columns))
        return np.stack([np.broadcast_to(np.asarray(interpreter.branch_tests[id(n)], dtype=bool), shape)
                         for n in self.branches], axis=-1)

    @functools.cached_property
    def operations(self) -> int:
        """An expression's operations: every node is evaluated once (both sides of a branch)."""
        return node_count(self.tree)

    def path(self, values: tuple[float, ...], dtype: str = "float64") -> tuple[tuple[Any, ...], int]:
        """The decisions (branches taken, loop bounds) a program makes at one point, and the
        operations it runs along them, found by running it on plain numpy numbers: fast, and
        every limit is enforced on the way."""
        interpreter = Interpreter(self, backend_ops("numpy", dtype), record=True)
        with np.errstate(all="ignore"):
            interpreter.run(values)
        return tuple(interpreter.decisions), interpreter.operations


def constants_used(tree: ast.AST) -> set[str]:
    """The constants a checked tree reads: bare names (never assigned: the checker refuses a
    constant as a variable) and dotted ones (``np.pi``)."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in CONSTANTS:
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            name = resolve_dotted(dotted(node) or "")
            if name in CONSTANTS:
                used.add(name)
    return used


def _check_variable_count(variables: Any, limits: Limits, loc: tuple[str, ...]) -> None:
    if len(variables) > limits.max_variables:
        raise over_limit(loc, At(1, 0), f"{len(variables)} free variables", "max_variables",
                         limits.max_variables, len(variables))


def compile_expression(text: str, limits: Limits, *, loc: tuple[str, ...] = ("expression",)) -> Formula:
    """Check an expression; its free variables are sorted by name. ``loc`` names the field
    the text came in, for the ``loc`` of every error."""
    tree = parse(text, "eval", limits, loc)
    check_expression(tree, limits, loc)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    # a call is a function, a bare name a variable (``gamma`` in 1/(gamma - 1) is a variable)
    variables = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                        and id(n) not in called and n.id not in CONSTANTS
                        and n.id not in MODULE_NAMES})
    _check_variable_count(variables, limits, loc)
    return Formula(tuple(variables), False, ast.unparse(tree), tree, None, limits, loc)


def compile_program(source: str, function: str, limits: Limits, *,
                    loc: tuple[str, ...] = ("program",)) -> Formula:
    """Check a program of ``def``s; ``function`` names the one to differentiate (an error about
    it names the field ``function`` beside ``loc``'s last)."""
    tree = parse(source, "exec", limits, loc)
    functions = check_program(tree, limits, loc)
    if function not in functions:
        defined = ", ".join(functions) or "none"
        raise InvalidInput(
            f"The program defines no function {function!r} (it defines: {defined}).",
            errors=[{"loc": [*loc[:-1], "function"], "msg": f"no function {function!r} in the program",
                     "type": "language.function"}])
    params = tuple(p.arg for p in functions[function].args.args)
    _check_variable_count(params, limits, loc)
    return Formula(params, True, f"{function}:{ast.unparse(tree)}", tree, function, limits, loc)
