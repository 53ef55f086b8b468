"""Evaluation of a checked tree with one backend's operations.

:class:`Interpreter` is an :class:`ast.NodeVisitor`, dispatching like the checker (one
``visit_<Node>`` per construct). Plain numbers stay Python numbers (folded with IEEE semantics)
until they meet a tensor, so they adopt the tensor's dtype; function arguments become tensors of
the formula's dtype. Programs run Python control flow on concrete values, or replay recorded
decisions (a *path*); every loop of the interpreter (evaluated nodes, loop trips, calls) checks
the computation's deadline every :data:`DEADLINE_EVERY` steps.
"""

from __future__ import annotations

import ast
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from labcrunch_service.language.check import trip_count, without_docstring
from labcrunch_service.language.diagnostics import At, invalid, over_limit
from labcrunch_service.language.ops import BackendOps
from labcrunch_service.language.vocabulary import (
    BINARY_OPS,
    COMPARE_OPS,
    CONSTANTS,
    dotted,
    fold,
    function_name,
    literal,
    resolve_dotted,
)
from labcrunch_service.progress import check_deadline

if TYPE_CHECKING:
    from labcrunch_service.language.formula import Formula

#: Operations (evaluated nodes), or loop trips and calls, between two deadline checks: a check
#: costs ~0.1 µs, an operation ~1 µs, and one over a large batch up to milliseconds.
DEADLINE_EVERY = 64


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class Interpreter(ast.NodeVisitor):
    """Evaluates a checked tree with one backend's operations; one instance per evaluation.

    ``record``: keep an expression's branch tests (:attr:`branch_tests`); ``replay``: a program's
    recorded decisions, or an expression's side per ``a if c else b`` node, to take instead of
    deciding. ``decisions`` and ``operations`` are what a program's run did.
    """

    def __init__(self, formula: Formula, ops: BackendOps, *, record: bool = False,
                 replay: tuple[Any, ...] | None = None) -> None:
        self.formula, self.ops, self.limits, self.loc = formula, ops, formula.limits, formula.loc
        self.decisions: list[Any] = []  # a program's branch outcomes and range bounds, in order
        self.replay = iter(replay) if replay is not None and formula.is_program else None
        # an expression's chosen side per `a if c else b` node (replay), or each node's test (record)
        self.branch_choice = (dict(zip((id(n) for n in formula.branches), replay, strict=True))
                              if replay is not None and not formula.is_program else None)
        self.branch_tests: dict[int, Any] | None = {} if record and not formula.is_program else None
        self.operations = 0  # evaluated nodes
        self.max_operations = self.limits.max_operations if formula.is_program else math.inf
        self.steps = 0  # loop trips and calls
        self.depth = 0
        self.env: dict[str, Any] = {}  # the variables of the expression, or of the running def
        self.functions: dict[str, ast.FunctionDef] = (
            {f.name: f for f in formula.tree.body} if formula.is_program else {})

    def run(self, values: tuple[Any, ...]) -> Any:
        """The formula's value at ``values`` (in ``formula.variables`` order)."""
        formula = self.formula
        if len(values) != len(formula.variables):
            raise TypeError(f"expected {len(formula.variables)} values "
                            f"({', '.join(formula.variables)}), got {len(values)}")
        try:
            if formula.is_program:
                return self.call_function(formula.function, list(values), formula.tree)
            self.env = dict(zip(formula.variables, values, strict=True))
            return self.evaluate(formula.tree.body)
        except RecursionError:
            raise over_limit(self.loc, At(1, 0), "the program nests calls too deeply",
                             "max_recursion_depth", self.limits.max_recursion_depth) from None

    def step(self) -> None:
        """Count a loop trip or a call; every ``DEADLINE_EVERY``, stop if past the deadline
        (:meth:`evaluate` does the same for operations)."""
        self.steps += 1
        if self.steps % DEADLINE_EVERY == 0:
            check_deadline()

    def generic_visit(self, node: ast.AST) -> Any:
        raise TypeError(f"{type(node).__name__} was not checked out of the language")

    # expressions
    def evaluate(self, node: ast.AST) -> Any:
        """An expression node's value; each node is one operation (limited in a program)."""
        self.operations += 1
        if self.operations % DEADLINE_EVERY == 0:
            check_deadline()
        if self.operations > self.max_operations:
            raise over_limit(self.loc, node, "the program ran too many operations",
                             "max_operations", self.limits.max_operations, self.operations)
        # self.visit(node), without its extra frame: this runs for every node
        return getattr(self, "visit_" + type(node).__name__, self.generic_visit)(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        return literal(node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in self.env:
            return self.env[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise invalid(self.loc, node, f"{node.id!r} is used before it is assigned", "unassigned")

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        return CONSTANTS[resolve_dotted(dotted(node))]

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return self.binary(BINARY_OPS[type(node.op)], self.evaluate(node.left),
                           self.evaluate(node.right))

    def binary(self, op: str, a: Any, b: Any) -> Any:
        if _is_number(a) and _is_number(b):
            if op == "**" and isinstance(a, int) and isinstance(b, int) and 0 <= b <= 64 \
                    and abs(a) <= 2**16:
                return literal(a**b)  # exact small integer powers, e.g. loop bounds
            return fold(op, a, b)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "**":
            return self.ops.power(a, b)
        floor = self.ops.functions["floor"]
        a, b = self.ops.tensor(a), self.ops.tensor(b)
        if op == "//":
            return floor(a / b)
        return a - b * floor(a / b)  # "%", with the sign of b as in Python

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.evaluate(node.operand)
        if isinstance(node.op, ast.USub):
            return -v
        if isinstance(node.op, ast.UAdd):
            return v
        return self.logical_not(v)

    def truth(self, v: Any) -> Any:
        """1.0/0.0 for a value's truth (non-zero is true)."""
        return float(v != 0) if _is_number(v) else self.ops.cast(v != 0)

    def logical_not(self, v: Any) -> Any:
        return float(v == 0) if _is_number(v) else self.ops.cast(v == 0)

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        truths = [self.truth(self.evaluate(v)) for v in node.values]
        result = truths[0]
        for t in truths[1:]:
            if isinstance(node.op, ast.And):
                result = result * t
            else:  # or: 1 - (1 - a)(1 - b)
                result = self.binary("-", 1.0, self.binary("*", 1.0 - result, 1.0 - t))
        return result

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.evaluate(node.left)
        result: Any = 1.0
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.evaluate(right_node)
            outcome = self.compare(COMPARE_OPS[type(op)], left, right)
            result = self.binary("*", result, outcome)
            left = right
        return result

    def compare(self, op: str, a: Any, b: Any) -> Any:
        if not (_is_number(a) and _is_number(b)):
            a, b = self.ops.tensor(a), self.ops.tensor(b)
        outcome = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b,
                   "==": a == b, "!=": a != b}[op]
        return float(outcome) if isinstance(outcome, bool | np.bool_) else self.ops.cast(outcome)

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        if self.formula.is_program:  # Python semantics: only the branch taken runs
            taken = node.body if self.as_bool(node.test, self.evaluate(node.test)) else node.orelse
            return self.evaluate(taken)
        if self.branch_choice is not None:  # the side this group of points takes
            return self.evaluate(node.body if self.branch_choice[id(node)] else node.orelse)
        test, body, orelse = (self.evaluate(n) for n in (node.test, node.body, node.orelse))
        if self.branch_tests is not None:
            self.branch_tests[id(node)] = test != 0
        if _is_number(test):
            return body if test != 0 else orelse
        return self.ops.functions["where"](test, self.ops.tensor(body), self.ops.tensor(orelse))

    def visit_Call(self, node: ast.Call) -> Any:
        args = [self.evaluate(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.functions:
            return self.call_function(func.id, args, node)
        name = function_name(func.id) if isinstance(func, ast.Name) else resolve_dotted(dotted(func))
        return self.ops.call(name, args)

    def as_bool(self, node: ast.AST, value: Any) -> bool:
        """A Python bool for a program's ``if``: taken from a concrete value, or replayed."""
        if self.replay is not None:
            return self.replayed(node)
        try:
            outcome = bool(value != 0)
        except Exception:  # a tracer under jit/vmap has no concrete value
            raise invalid(self.loc, node, "this condition depends on a variable and programs run "
                                          "point by point; it cannot be traced symbolically",
                          "control-flow") from None
        self.decisions.append(outcome)
        return outcome

    def concrete_number(self, node: ast.AST, value: Any) -> float:
        """A range() bound: a plain or concrete number, or replayed."""
        if self.replay is not None:
            return self.replayed(node)
        try:
            number = float(value) if _is_number(value) else float(np.asarray(value))
        except Exception:
            raise invalid(self.loc, node, "range() bounds must be known numbers, not values "
                                          "that are being differentiated", "range") from None
        self.decisions.append(number)
        return number

    def replayed(self, node: ast.AST) -> Any:
        try:
            return next(self.replay)
        except StopIteration:  # only if a path from another program is replayed
            raise invalid(self.loc, node, "the recorded path does not fit this program",
                          "control-flow") from None

    # programs
    def call_function(self, name: str, args: list[Any], node: ast.AST) -> Any:
        fn = self.functions[name]
        if self.depth >= self.limits.max_recursion_depth:
            raise over_limit(self.loc, node, f"calls to {name}() nest more than "
                                             f"{self.limits.max_recursion_depth} deep",
                             "max_recursion_depth", self.limits.max_recursion_depth)
        self.step()
        self.depth += 1
        caller_env, self.env = self.env, dict(zip((p.arg for p in fn.args.args), args, strict=True))
        try:
            try:
                self.block(without_docstring(fn.body))
            except _Return as done:
                return done.value
            raise invalid(self.loc, fn, f"{name}() ended without a return", "no-return")
        finally:
            self.env = caller_env
            self.depth -= 1

    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.visit(stmt)

    def visit_Assign(self, node: ast.Assign) -> None:
        value = self.evaluate(node.value)
        for target in node.targets:
            self.env[target.id] = value

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        current = self.visit_Name(node.target)
        self.env[node.target.id] = self.binary(BINARY_OPS[type(node.op)], current,
                                               self.evaluate(node.value))

    def visit_Return(self, node: ast.Return) -> None:
        raise _Return(self.evaluate(node.value))

    def visit_Pass(self, node: ast.Pass) -> None:
        pass

    def visit_If(self, node: ast.If) -> None:
        self.block(node.body if self.as_bool(node.test, self.evaluate(node.test)) else node.orelse)

    def visit_For(self, node: ast.For) -> None:
        bounds = [self.concrete_number(a, self.evaluate(a)) for a in node.iter.args]
        trips = trip_count(bounds, self.loc, node.iter)
        if trips > self.limits.max_loop_trips:
            raise over_limit(self.loc, node.iter, f"the loop runs {trips} times", "max_loop_trips",
                             self.limits.max_loop_trips, trips)
        for i in range(*(int(b) for b in bounds)):
            self.step()
            self.env[node.target.id] = i
            self.block(node.body)
