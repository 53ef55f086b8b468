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

from labcrunch_service.errors import InvalidInput, LimitExceeded, did_you_mean
from labcrunch_service.language.diagnostics import entry, invalid, over_limit
from labcrunch_service.language.vocabulary import (
    ALIASES,
    BINARY_OPS,
    COMPARE_OPS,
    CONSTANTS,
    FUNCTIONS,
    MODULE_NAMES,
    MODULE_PREFIXES,
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

#: How a refusal names a construct outside the language, as users write it.
DESCRIBE: dict[type, str] = {
    ast.Lambda: "lambda", ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression",
    ast.comprehension: "a comprehension", ast.Subscript: "a subscript", ast.Slice: "a slice",
    ast.Import: "import", ast.ImportFrom: "import", ast.alias: "import", ast.While: "while",
    ast.With: "with", ast.AsyncWith: "async with", ast.withitem: "with", ast.Try: "try",
    ast.TryStar: "try", ast.ExceptHandler: "except", ast.ClassDef: "class", ast.Global: "global",
    ast.Nonlocal: "nonlocal", ast.Delete: "del", ast.Raise: "raise", ast.Assert: "assert",
    ast.Yield: "yield", ast.YieldFrom: "yield from", ast.Await: "await", ast.List: "a list",
    ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string", ast.Starred: "*args", ast.NamedExpr: "the walrus operator :=",
    ast.Break: "break", ast.Continue: "continue", ast.AsyncFunctionDef: "async def",
    ast.AsyncFor: "async for", ast.AnnAssign: "an annotated assignment", ast.Match: "match",
    ast.match_case: "match", ast.Store: "assignment", ast.Del: "del", ast.keyword: "a keyword argument",
    ast.MatMult: "the @ operator (matrix product)", ast.LShift: "the << operator (bit shift)",
    ast.RShift: "the >> operator (bit shift)", ast.Is: "`is`", ast.IsNot: "`is not`",
    ast.In: "`in` (outside `for ... in range(...)`)", ast.NotIn: "`not in`",
}
#: Constructs refused with a message that says what to write instead.
INSTEAD: dict[type, str] = {
    ast.BitXor: "use ** for powers (^ is bitwise xor in Python)",
    ast.BitAnd: "& (bitwise and) is not part of the language; use `and`",
    ast.BitOr: "| (bitwise or) is not part of the language; use `or`",
    ast.Invert: "~ (bitwise not) is not part of the language; use `not x` for logic or `-x` to negate",
}
#: Largest integer literal: beyond it float64 (every number's type) overflows.
MAX_INTEGER_BITS = 1024


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
                    self.unsupported(child if hasattr(child, "lineno") else parent, type(child))

    def unsupported(self, node: ast.AST, kind: type | None = None) -> None:
        """Refuse ``node``, named by ``kind`` (its operator, say) or by its own type."""
        kind = kind or type(node)
        if kind in (ast.BinOp, ast.UnaryOp, ast.AugAssign):
            kind = type(node.op)
        elif kind is ast.Compare:
            kind = next((type(op) for op in node.ops if type(op) not in COMPARE_OPS), kind)
        if kind in INSTEAD:
            return self.refuse(node, INSTEAD[kind])
        what = DESCRIBE.get(kind) or f"this construct ({kind.__name__})"
        self.refuse(node, f"{what} is not part of the language")

    def generic_visit(self, node: ast.AST) -> None:
        self.unsupported(node)

    # expressions (shared by both forms)
    def visit_Expression(self, node: ast.Expression) -> None:
        self.visit(node.body)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if type(value) not in (int, float):
            kind = "a string" if isinstance(value, str | bytes) else shown(node)
            self.refuse(node, f"{kind} is not allowed; only numbers are")
        elif type(value) is int and value.bit_length() > MAX_INTEGER_BITS:
            self.refuse(node, f"this integer literal ({value.bit_length()} bits) is too large: "
                              "numbers are float64, at most about 1.8e308", "number")
        elif math.isinf(value):
            self.refuse(node, "this number literal is too large: numbers are float64, at most "
                              "about 1.8e308 (write inf for infinity)", "number")

    def visit_Name(self, node: ast.Name) -> None:
        n = node.id
        if n.startswith("_"):
            self.refuse(node, f"names starting with '_' ({n}) are not allowed", "name")
        elif n in CONSTANTS:
            pass
        elif n in self.functions or n == "range":
            self.refuse(node, f"{n} is a function; call it", "name")
        elif n in MODULE_NAMES:
            self.refuse(node, f"{n} is a module; use a dotted function such as {n}.sqrt(x)", "name")
        elif self.names is not None and n not in self.names:
            if function_name(n):
                self.refuse(node, f"{n} is a function: call it, or assign {n} before using it "
                                  "as a variable", "name")
            else:
                self.refuse(node, f"unknown name {n!r}: not a parameter, assigned variable, "
                                  "function or constant", "name")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        spelled = dotted(node)
        name = resolve_dotted(spelled) if spelled else None
        if name is None:
            suggestion = did_you_mean(spelled, _dotted_names(spelled)) if spelled else ""
            self.refuse(node, f"attribute access {shown(node)!r} is not allowed; only dotted "
                              "names of whitelisted functions and constants are"
                              + (f"; {suggestion}" if suggestion else ""))
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
        accepted: tuple[int, ...] = (len(node.args),)
        callee: str | None = None
        if isinstance(func, ast.Name):
            shown_name = func.id
            if func.id in self.functions:
                callee, accepted = func.id, (len(self.functions[func.id].args.args),)
            elif func.id == "range":
                self.refuse(node, "range() is only allowed as the iterable of a for loop")
            elif function_name(func.id):
                callee = function_name(func.id)
                accepted = FUNCTIONS[callee]
            else:
                self.unknown_function(node, func.id, [*FUNCTIONS, *ALIASES, *self.functions])
        elif isinstance(func, ast.Attribute) and dotted(func):
            shown_name = dotted(func)
            callee = resolve_dotted(shown_name)
            if callee in FUNCTIONS:
                accepted = FUNCTIONS[callee]
            else:
                callee = None
                self.unknown_function(node, shown_name, _dotted_names(shown_name))
        elif isinstance(func, ast.Attribute):  # (x + 1).real(...)
            shown_name = shown(func)
            self.refuse(func, f"{shown_name!r} is not a function of the language", "name")
        else:  # (x + 1)(x - 1), 2(x + 1): a product written without *
            shown_name = shown(func)
            if not isinstance(func, ast.Constant | ast.Call):
                shown_name = f"({shown_name})"
            self.refuse(func, f"multiplication must be written: {shown_name}*({_arguments(node)})",
                        "multiplication")
        if callee is not None and len(node.args) not in accepted:
            counts = " or ".join(str(n) for n in accepted)
            self.refuse(node, f"{shown_name}() takes {counts} argument{'s' * (accepted != (1,))}, "
                              f"got {len(node.args)}", "arity")
        for a in node.args:
            self.visit(a)
        if callee == "power" and len(node.args) == 2:
            self.exponent(node.args[1])

    def unknown_function(self, node: ast.Call, name: str, known: list[str]) -> None:
        suggestion = did_you_mean(name, known)
        if "." not in name and len(node.args) == 1:  # x(y + 1): maybe a product without *
            product = f"if {name} is a variable, multiplication must be written: {name}*({_arguments(node)})"
            suggestion = f"{suggestion} ({product})" if suggestion else product
        self.refuse(node.func, f"unknown function {name!r}" + (f"; {suggestion}" if suggestion else ""),
                    "name")

    def exponent(self, node: ast.AST) -> None:
        value = constant_value(node)
        if value is not None and abs(value) > self.limits.max_exponent_literal:
            self.limit(node, f"the exponent {value!r} is too large", "max_exponent_literal",
                       self.limits.max_exponent_literal, value)

    # programs
    def visit_Module(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef):
                if stmt.name in self.functions:
                    self.refuse(stmt, f"function {stmt.name!r} is defined twice", "name")
                elif stmt.name.startswith("_") or stmt.name in CONSTANTS or function_name(stmt.name) \
                        or stmt.name in MODULE_NAMES or stmt.name == "range":  # would shadow
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
        # a variable may share a whitelisted function's name (a call is the function, a bare name
        # the variable), not a def's, a constant's or a module's
        if name.startswith("_") or name in CONSTANTS or name in MODULE_NAMES \
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


def shown(node: ast.AST, limit: int = 40) -> str:
    """A node as source text for a message, at most ``limit`` characters (and never Python's
    int-to-str digit limit: a 5,000-digit literal is shown as ``…``)."""
    try:
        text = ast.unparse(node)
    except ValueError:
        return "…"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _arguments(call: ast.Call) -> str:
    return ", ".join(shown(a) for a in call.args)


def _dotted_names(spelled: str) -> list[str]:
    """Every whitelisted name under the module prefix of ``spelled`` (``np.sine`` → ``np.sin``,
    ...), for suggestions."""
    prefix = next((p for p in MODULE_PREFIXES if spelled.startswith(p)), None)
    return [] if prefix is None else [prefix + name for name in (*FUNCTIONS, *ALIASES, *CONSTANTS)]
