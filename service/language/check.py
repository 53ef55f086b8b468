"""The whitelist: which constructs of a parsed tree belong to the language, and the limits that
are known before anything runs (literal exponents, constant loop bounds, a program's least
number of operations).

:class:`Checker` walks the tree as an :class:`ast.NodeVisitor` (one ``visit_<Node>`` per
construct, like the interpreter) and collects every refusal with its position, so that one answer
lists them all. Loop arithmetic (:func:`trip_count`) and :func:`without_docstring` are shared with
the interpreter, which enforces at run time what could not be known here.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.language.diagnostics import entry, invalid, over_limit
from labcrunch_service.language.vocabulary import (
    BINARY_OPS,
    COMPARE_OPS,
    CONSTANTS,
    FUNCTIONS,
    MODULE_NAMES,
    dotted,
    fold,
    function_name,
    literal,
    resolve_dotted,
)
from labcrunch_service.settings import Limits

EXPRESSION_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
                    ast.Call, ast.Name, ast.Constant, ast.Attribute, ast.Load,
                    *BINARY_OPS, *COMPARE_OPS, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or)
PROGRAM_NODES = (ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Assign, ast.AugAssign,
                 ast.If, ast.For, ast.Return, ast.Pass, ast.Store, ast.Expr)

#: How a refusal names a construct outside the language.
DESCRIBE = {
    ast.Lambda: "lambda", ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression",
    ast.Subscript: "a subscript", ast.Import: "import", ast.ImportFrom: "import",
    ast.While: "while", ast.With: "with", ast.Try: "try", ast.ClassDef: "class", ast.Global: "global",
    ast.Nonlocal: "nonlocal", ast.Delete: "del", ast.Raise: "raise", ast.Assert: "assert",
    ast.Yield: "yield", ast.Await: "await", ast.List: "a list", ast.Tuple: "a tuple",
    ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string", ast.Starred: "*args",
    ast.NamedExpr: "the walrus operator", ast.Break: "break", ast.Continue: "continue",
    ast.AsyncFunctionDef: "async def", ast.MatMult: "the @ operator", ast.Store: "assignment",
    ast.keyword: "a keyword argument",
}


def check_expression(tree: ast.Expression, limits: Limits, loc: tuple[str, ...]) -> None:
    """Refuse an expression with anything outside the language (every refusal at once)."""
    checker = Checker(limits, loc)
    checker.kinds(tree, EXPRESSION_NODES)
    checker.raise_if_any()
    checker.visit(tree)
    checker.raise_if_any()


def check_program(tree: ast.Module, limits: Limits, loc: tuple[str, ...]) -> dict[str, ast.FunctionDef]:
    """Refuse a program with anything outside the language; its functions by name."""
    checker = Checker(limits, loc)
    checker.kinds(tree, EXPRESSION_NODES + PROGRAM_NODES)
    checker.raise_if_any()
    checker.visit(tree)
    checker.raise_if_any()
    return checker.functions


class Checker(ast.NodeVisitor):
    """Walks a parsed tree and collects every construct outside the language, with positions."""

    def __init__(self, limits: Limits, loc: tuple[str, ...]) -> None:
        self.limits, self.loc = limits, loc
        self.functions: dict[str, ast.FunctionDef] = {}
        self.errors: list[dict[str, Any]] = []
        self.over_limit: LimitExceeded | None = None
        # the names the current def may read; None in an expression, where every name is a variable
        self.names: frozenset[str] | None = None

    def refuse(self, node: ast.AST, msg: str, kind: str = "unsupported") -> None:
        self.errors.append(entry(self.loc, node, msg, kind))

    def limit(self, node: ast.AST, msg: str, limit: str, maximum: Any, value: Any) -> None:
        if self.over_limit is None:
            self.over_limit = over_limit(self.loc, node, msg, limit, maximum, value)

    def raise_if_any(self) -> None:
        if self.over_limit is not None:
            raise self.over_limit
        if self.errors:
            first = self.errors[0]
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise InvalidInput(f"line {first['line']}, column {first['column']}: {first['msg']}{more}",
                               errors=self.errors[:20])

    def kinds(self, tree: ast.AST, allowed: tuple[type, ...]) -> None:
        """Refuse node kinds outside the language before the structured walk, wherever they hide
        (operators and contexts have no position of their own: report their parent's)."""
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                if not isinstance(child, allowed):
                    self.unsupported(child if hasattr(child, "lineno") else parent,
                                     what=DESCRIBE.get(type(child)))

    def unsupported(self, node: ast.AST, what: str | None = None) -> None:
        what = what or DESCRIBE.get(type(node))
        if what is None and isinstance(node, ast.BinOp):
            what = DESCRIBE.get(type(node.op), type(node.op).__name__)
        if what is None and isinstance(node, ast.Compare):
            what = "comparison with 'is' or 'in'"
        what = what or type(node).__name__
        self.refuse(node, f"{what} is not part of the language")

    def generic_visit(self, node: ast.AST) -> None:
        self.unsupported(node)

    # expressions (shared by both forms)
    def visit_Expression(self, node: ast.Expression) -> None:
        self.visit(node.body)

    def visit_Constant(self, node: ast.Constant) -> None:
        if type(node.value) not in (int, float):
            kind = "a string" if isinstance(node.value, str | bytes) else repr(node.value)
            self.refuse(node, f"{kind} is not allowed; only numbers are")

    def visit_Name(self, node: ast.Name) -> None:
        n = node.id
        if n.startswith("_"):
            self.refuse(node, f"names starting with '_' ({n}) are not allowed", "name")
        elif n in CONSTANTS:
            pass
        elif function_name(n) or n in self.functions or n == "range":
            self.refuse(node, f"{n} is a function; call it", "name")
        elif n in MODULE_NAMES:
            self.refuse(node, f"{n} is a module; use a dotted function such as {n}.sqrt(x)", "name")
        elif self.names is not None and n not in self.names:
            self.refuse(node, f"unknown name {n!r}: not a parameter, assigned variable, "
                              "function or constant", "name")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        spelled = dotted(node)
        name = resolve_dotted(spelled) if spelled else None
        if name is None:
            self.refuse(node, f"attribute access {ast.unparse(node)!r} is not allowed; "
                              "only dotted names of whitelisted functions and constants are")
        elif name in FUNCTIONS:
            self.refuse(node, f"{spelled} is a function; call it")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in BINARY_OPS:
            return self.unsupported(node)
        self.visit(node.left)
        self.visit(node.right)
        if isinstance(node.op, ast.Pow):
            self.exponent(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
            return self.unsupported(node)
        self.visit(node.operand)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for v in node.values:
            self.visit(v)

    def visit_Compare(self, node: ast.Compare) -> None:
        if not all(type(op) in COMPARE_OPS for op in node.ops):
            return self.unsupported(node)
        for v in (node.left, *node.comparators):
            self.visit(v)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        for v in (node.test, node.body, node.orelse):
            self.visit(v)

    def visit_Call(self, node: ast.Call) -> None:
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.refuse(node, "only positional arguments are allowed")
        func = node.func
        if isinstance(func, ast.Name):
            callee, shown = func.id, func.id
            if callee in self.functions:
                want = len(self.functions[callee].args.args)
            elif callee == "range":
                self.refuse(node, "range() is only allowed as the iterable of a for loop")
                want = len(node.args)
            elif function_name(callee):
                callee = function_name(callee)
                want = FUNCTIONS[callee]
            else:
                self.refuse(func, f"unknown function {callee!r}", "name")
                want = len(node.args)
        else:
            spelled = dotted(func)
            callee = resolve_dotted(spelled) if spelled else None
            shown = spelled or ast.unparse(func)
            if callee is None or callee not in FUNCTIONS:
                self.refuse(func, f"{shown!r} is not a function of the language", "name")
                want = len(node.args)
            else:
                want = FUNCTIONS[callee]
        if len(node.args) != want:
            self.refuse(node, f"{shown}() takes {want} argument{'s' * (want != 1)}, "
                              f"got {len(node.args)}", "arity")
        for a in node.args:
            self.visit(a)
        if callee == "power" and len(node.args) == 2:
            self.exponent(node.args[1])

    def exponent(self, node: ast.AST) -> None:
        value = constant_value(node)
        if value is not None and not abs(value) <= self.limits.max_exponent_literal:
            self.limit(node, f"the exponent {value:g} is too large", "max_exponent_literal",
                       self.limits.max_exponent_literal, value)

    # programs
    def visit_Module(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef):
                if stmt.name in self.functions:
                    self.refuse(stmt, f"function {stmt.name!r} is defined twice", "name")
                elif stmt.name.startswith("_") or stmt.name in CONSTANTS or function_name(stmt.name) \
                        or stmt.name in MODULE_NAMES or stmt.name == "range":
                    self.refuse(stmt, f"{stmt.name!r} cannot be the name of a function", "name")
                self.functions[stmt.name] = stmt
            else:
                self.refuse(stmt, "only function definitions (def) are allowed at the top level")
        for fn in self.functions.values():
            self.function_def(fn)

    def function_def(self, fn: ast.FunctionDef) -> None:
        a = fn.args
        if fn.decorator_list or fn.returns or a.vararg or a.kwarg or a.kwonlyargs or a.defaults \
                or a.posonlyargs or a.kw_defaults or any(p.annotation for p in a.args):
            self.refuse(fn, "a def may only list plain parameter names (no defaults, *args, "
                            "annotations or decorators)")
        params = [p.arg for p in a.args]
        for p in a.args:
            self.local_name(p, p.arg)
        if len(set(params)) != len(params):
            self.refuse(fn, "duplicate parameter names")
        assigned = set(params)
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                assigned.add(node.id)
        self.names = frozenset(assigned)
        self.block(without_docstring(fn.body))
        cost = static_cost(fn.body)
        if cost > self.limits.max_operations:  # nested constant loops: refuse before running
            self.limit(fn, f"{fn.name}() needs at least {cost:.0f} operations per call",
                       "max_operations", self.limits.max_operations, cost)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        # top-level defs are checked by function_def(); a def reached by the walk is nested
        self.refuse(node, "functions must be defined at the top level, not nested")

    def local_name(self, node: ast.AST, name: str) -> None:
        if name.startswith("_") or name in CONSTANTS or function_name(name) or name in MODULE_NAMES \
                or name in self.functions or name == "range":
            self.refuse(node, f"{name!r} cannot be a variable name", "name")

    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.visit(stmt)

    def target(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.local_name(node, node.id)
        else:
            self.refuse(node, "only a plain name can be assigned to")

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            self.target(t)
        self.visit(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if type(node.op) not in BINARY_OPS:
            return self.unsupported(node)
        self.target(node.target)
        self.visit(node.value)
        if isinstance(node.op, ast.Pow):
            self.exponent(node.value)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is None:
            self.refuse(node, "return needs a value")
        else:
            self.visit(node.value)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self.block(node.body)
        self.block(node.orelse)

    def visit_Pass(self, node: ast.Pass) -> None:
        pass

    def visit_Expr(self, node: ast.Expr) -> None:
        self.refuse(node, "a bare expression does nothing here; assign or return it")

    def visit_For(self, node: ast.For) -> None:
        self.target(node.target)
        it = node.iter
        if node.orelse:
            self.refuse(node, "for ... else is not part of the language")
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and not it.keywords and 1 <= len(it.args) <= 3):
            self.refuse(it, "a for loop must iterate over range(stop), range(start, stop) or "
                            "range(start, stop, step)")
        else:
            for a in it.args:
                self.visit(a)
            bounds = [constant_value(a) for a in it.args]
            if all(b is not None for b in bounds):  # known now: refuse before any work starts
                trips = trip_count(bounds, self.loc, it)
                if trips > self.limits.max_loop_trips:
                    self.limit(it, f"the loop runs {trips} times", "max_loop_trips",
                               self.limits.max_loop_trips, trips)
        self.block(node.body)


# --- what is known before running ------------------------------------------------------------

def constant_value(node: ast.AST) -> float | None:
    """The value of a sub-tree built only from literals and constants, else None (no evaluation
    of user text: only literals, constants, unary minus and the arithmetic operators)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(literal(node.value))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.Attribute):
        name = resolve_dotted(dotted(node) or "")
        return CONSTANTS.get(name) if name else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = constant_value(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPS:
        a, b = constant_value(node.left), constant_value(node.right)
        if a is None or b is None:
            return None
        return fold(BINARY_OPS[type(node.op)], a, b)
    return None


def node_count(node: ast.AST) -> int:
    """Expression nodes the interpreter evaluates (each counts as one operation)."""
    return sum(1 for n in ast.walk(node) if isinstance(n, ast.expr)
               and not isinstance(getattr(n, "ctx", None), ast.Store))


def static_cost(body: list[ast.stmt]) -> float:
    """A lower bound on the operations one run of ``body`` takes: loops with constant bounds
    multiply their bodies (unknown bounds count once and are checked when they run)."""
    total = 0.0
    for stmt in body:
        if isinstance(stmt, ast.For):
            bounds = [constant_value(a) for a in getattr(stmt.iter, "args", [])]
            trips = 1
            if bounds and all(b is not None and math.isfinite(b) and b.is_integer() for b in bounds) \
                    and not (len(bounds) == 3 and bounds[2] == 0):
                trips = range_length([int(b) for b in bounds])
            total += node_count(stmt.iter) + trips * static_cost(stmt.body)
        elif isinstance(stmt, ast.If):
            total += node_count(stmt.test) + min(static_cost(stmt.body), static_cost(stmt.orelse))
        else:
            total += node_count(stmt)
    return total


def without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    """A def's statements after its docstring, if it has one (the only string allowed)."""
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return body[1:]
    return body


def trip_count(bounds: list[float], loc: tuple[str, ...], node: ast.AST) -> int:
    """How many times ``range(*bounds)`` runs; 422 for bounds that are not whole or a zero step."""
    for b in bounds:
        if not (math.isfinite(b) and float(b).is_integer()):
            raise invalid(loc, node, f"range() needs whole numbers, got {b:g}", "range")
    ints = [int(b) for b in bounds]
    if len(ints) == 3 and ints[2] == 0:
        raise invalid(loc, node, "range() step must not be zero", "range")
    return range_length(ints)


def range_length(bounds: list[int]) -> int:
    """``len(range(*bounds))`` without its overflow: ``len`` of a range longer than 2**63 raises
    OverflowError, and the bounds may be any size here (``range(10**20)``, ``range(x)`` at 1e300)."""
    start, stop, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds, 1)[:3]
    return max(0, -((start - stop) // step))
