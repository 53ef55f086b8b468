"""The labcrunch maths language: safe expressions and small programs, run on JAX or TensorFlow.

Users send maths as text. We parse it with :mod:`ast`, walk a whitelist of node kinds, and
interpret the tree ourselves with the chosen backend's operations -- the text is never handed to
``eval``/``exec``/``compile`` or any other evaluator.

Two forms:

* **Expressions** (``compile_expression``): numbers, variables, ``+ - * / // % **``, unary ``-``,
  comparisons, ``and or not``, ``a if c else b``, calls to :data:`FUNCTIONS` and the constants
  ``pi``, ``e``, ``inf``, ``nan``. Free variables are every other name, listed **sorted by name**
  in ``Formula.variables``. Expressions are traced once and are safe under ``jit``/``vmap``/
  ``grad``: ``a if c else b`` is ``where(c, a, b)`` (both sides are evaluated).
* **Programs** (``compile_program``): one or more ``def`` (recursion allowed) with assignment,
  augmented assignment, ``if/elif/else``, ``for i in range(...)``, ``return`` and ``pass``.
  ``Formula.variables`` are the chosen function's parameters, in declaration order. Programs run
  Python control flow on concrete values, so they are evaluated point by point (never under
  ``jit``/``vmap``): an ``if`` on a variable takes the branch of the current point, exactly like
  ``jax.grad`` of the same Python function.

Truth values: comparisons and ``and``/``or``/``not`` give ``1.0`` or ``0.0``; anything non-zero is
true. ``a // b`` is ``floor(a / b)`` and ``a % b`` is ``a - b * floor(a / b)`` on both backends.
Dotted names resolve to the same whitelist: ``jax.numpy.sqrt``, ``jnp.sqrt``, ``np.sqrt``,
``math.sqrt``, ``tf.sqrt``, ``tf.math.sqrt``, ``tf.nn.relu``, ``jax.nn.relu``, ``np.pi``, ...

Every refusal is :class:`~labcrunch_service.errors.InvalidInput` (422) or
:class:`~labcrunch_service.errors.LimitExceeded` (413, naming the limit), with ``errors`` entries that carry
``loc``, ``msg``, ``type`` and the 1-based ``line`` and ``column`` of the offending construct.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.progress import check_deadline
from labcrunch_service.settings import Limits

# --- the vocabulary -------------------------------------------------------------------------

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
BACKENDS = ("jax", "tensorflow")
DTYPES = ("float32", "float64")

_BINARY_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
               ast.Mod: "%", ast.Pow: "**"}
_COMPARE_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_EXPRESSION_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
                     ast.Call, ast.Name, ast.Constant, ast.Attribute, ast.Load,
                     *_BINARY_OPS, *_COMPARE_OPS, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or)
_PROGRAM_NODES = (ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Assign, ast.AugAssign,
                  ast.If, ast.For, ast.Return, ast.Pass, ast.Store, ast.Expr)
_SQRT_HALF = math.sqrt(0.5)
_SMALL_INT = 2**31  # int literals up to this stay ints (JAX's exact integer powers); larger → float

_DESCRIBE = {
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


# --- errors with positions ------------------------------------------------------------------

def _position(node: Any) -> tuple[int, int]:
    return getattr(node, "lineno", 1) or 1, (getattr(node, "col_offset", 0) or 0) + 1


def _entry(loc: tuple[str, ...], node: Any, msg: str, kind: str) -> dict[str, Any]:
    line, column = _position(node)
    return {"loc": [*loc], "msg": msg, "type": f"language.{kind}", "line": line, "column": column}


def _invalid(loc: tuple[str, ...], node: Any, msg: str, kind: str) -> InvalidInput:
    line, column = _position(node)
    return InvalidInput(f"line {line}, column {column}: {msg}", errors=[_entry(loc, node, msg, kind)])


def _over_limit(loc: tuple[str, ...], node: Any, msg: str, limit: str, maximum: Any,
                value: Any = None) -> LimitExceeded:
    line, column = _position(node)
    return LimitExceeded(f"line {line}, column {column}: {msg} (limits.{limit} = {maximum})",
                         limit=limit, maximum=maximum, value=value,
                         errors=[_entry(loc, node, msg, "limit")])


# --- parsing and static checks ---------------------------------------------------------------

def _bracket_depth(text: str) -> tuple[int, int, int]:
    """Deepest bracket nesting in ``text`` and where it is reached (line, column), without parsing."""
    depth = deepest = 0
    line = column = where_line = where_column = 1
    for ch in text:
        if ch in "([{":
            depth += 1
            if depth > deepest:
                deepest, where_line, where_column = depth, line, column
        elif ch in ")]}":
            depth -= 1
        if ch == "\n":
            line, column = line + 1, 1
        else:
            column += 1
    return deepest, where_line, where_column


@dataclass(frozen=True)
class _At:
    """A stand-in node carrying just a position, for errors found before there is a tree."""

    lineno: int
    col_offset: int


def _parse(text: str, mode: str, limits: Limits, loc: tuple[str, ...]) -> ast.AST:
    if not isinstance(text, str):
        raise InvalidInput("The text must be a string.", errors=[{"loc": [*loc], "msg": "not a string",
                                                                   "type": "language.type"}])
    if len(text) > limits.max_text_length:
        raise _over_limit(loc, _At(1, 0), f"the text has {len(text)} characters",
                          "max_text_length", limits.max_text_length, len(text))
    if not text.strip():
        raise _invalid(loc, _At(1, 0), "the text is empty", "empty")
    deepest, line, column = _bracket_depth(text)
    if deepest > limits.max_nesting_depth:  # checked before ast.parse, which recurses on nesting
        raise _over_limit(loc, _At(line, column - 1), f"brackets nest {deepest} deep",
                          "max_nesting_depth", limits.max_nesting_depth, deepest)
    try:
        return ast.parse(text, mode=mode)
    except SyntaxError as exc:
        line = exc.lineno or 1
        if exc.offset:
            where = _At(line, exc.offset - 1)
        else:  # the text ended too early: point just past its last character
            lines = text.splitlines() or [""]
            where = _At(line, len(lines[min(line, len(lines)) - 1]))
        raise _invalid(loc, where, f"syntax error: {exc.msg}", "syntax") from None
    except (RecursionError, MemoryError):
        raise _over_limit(loc, _At(1, 0), "the text is too deeply nested to parse",
                          "max_nesting_depth", limits.max_nesting_depth) from None
    except ValueError as exc:  # e.g. a NUL byte
        raise _invalid(loc, _At(1, 0), f"cannot parse: {exc}", "syntax") from None


def _check_size(tree: ast.AST, limits: Limits, loc: tuple[str, ...]) -> None:
    """Count nodes and measure depth iteratively, so later recursive walks are bounded."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.max_ast_nodes:
            raise _over_limit(loc, node, "the syntax tree has too many nodes", "max_ast_nodes",
                              limits.max_ast_nodes)
        if depth > limits.max_nesting_depth:
            raise _over_limit(loc, node, f"the syntax tree nests deeper than {depth - 1} levels",
                              "max_nesting_depth", limits.max_nesting_depth, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _dotted(node: ast.AST) -> str | None:
    """``jax.numpy.sqrt`` for an Attribute chain over a Name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _resolve_dotted(dotted: str) -> str | None:
    """The whitelisted function or constant a dotted name means, or None."""
    for prefix in MODULE_PREFIXES:
        if dotted.startswith(prefix):
            rest = dotted[len(prefix):]
            name = ALIASES.get(rest, rest)
            if "." not in rest and (name in FUNCTIONS or name in CONSTANTS):
                return name
    return None


def _function_name(name: str) -> str | None:
    name = ALIASES.get(name, name)
    return name if name in FUNCTIONS else None


def _fold(op: str, a: float, b: float) -> float:
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


def _literal(value: Any) -> float | int:
    """A number literal as the interpreter uses it: small ints stay ints, the rest floats."""
    if isinstance(value, int) and abs(value) <= _SMALL_INT:
        return value
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _constant_value(node: ast.AST) -> float | None:
    """The value of a sub-tree built only from literals and constants, else None (no evaluation
    of user text: only literals, constants, unary minus and the arithmetic operators)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(_literal(node.value))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.Attribute):
        name = _resolve_dotted(_dotted(node) or "")
        return CONSTANTS.get(name) if name else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _constant_value(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        a, b = _constant_value(node.left), _constant_value(node.right)
        if a is None or b is None:
            return None
        return _fold(_BINARY_OPS[type(node.op)], a, b)
    return None


@dataclass
class _Checker:
    """Walks a parsed tree and collects every construct outside the language, with positions."""

    limits: Limits
    loc: tuple[str, ...]
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    over_limit: LimitExceeded | None = None

    def refuse(self, node: ast.AST, msg: str, kind: str = "unsupported") -> None:
        self.errors.append(_entry(self.loc, node, msg, kind))

    def limit(self, node: ast.AST, msg: str, limit: str, maximum: Any, value: Any) -> None:
        if self.over_limit is None:
            self.over_limit = _over_limit(self.loc, node, msg, limit, maximum, value)

    def raise_if_any(self) -> None:
        if self.over_limit is not None:
            raise self.over_limit
        if self.errors:
            first = self.errors[0]
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise InvalidInput(f"line {first['line']}, column {first['column']}: {first['msg']}{more}",
                               errors=self.errors[:20])

    # expressions (shared by both forms); `names` are the names a program may read here
    def expr(self, node: ast.AST, names: frozenset[str] | None) -> None:
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                kind = "a string" if isinstance(node.value, str | bytes) else repr(node.value)
                self.refuse(node, f"{kind} is not allowed; only numbers are")
        elif isinstance(node, ast.Name):
            self.name(node, names)
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            name = _resolve_dotted(dotted) if dotted else None
            if name is None:
                self.refuse(node, f"attribute access {ast.unparse(node)!r} is not allowed; "
                                  "only dotted names of whitelisted functions and constants are")
            elif name in FUNCTIONS:
                self.refuse(node, f"{dotted} is a function; call it")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            self.expr(node.left, names)
            self.expr(node.right, names)
            if isinstance(node.op, ast.Pow):
                self.exponent(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
            self.expr(node.operand, names)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self.expr(v, names)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE_OPS for op in node.ops):
            for v in (node.left, *node.comparators):
                self.expr(v, names)
        elif isinstance(node, ast.IfExp):
            for v in (node.test, node.body, node.orelse):
                self.expr(v, names)
        elif isinstance(node, ast.Call):
            self.call(node, names)
        else:
            self.unsupported(node)

    def exponent(self, node: ast.AST) -> None:
        value = _constant_value(node)
        if value is not None and not abs(value) <= self.limits.max_exponent_literal:
            self.limit(node, f"the exponent {value:g} is too large", "max_exponent_literal",
                       self.limits.max_exponent_literal, value)

    def name(self, node: ast.Name, names: frozenset[str] | None) -> None:
        n = node.id
        if n.startswith("_"):
            self.refuse(node, f"names starting with '_' ({n}) are not allowed", "name")
        elif n in CONSTANTS:
            pass
        elif _function_name(n) or n in self.functions or n == "range":
            self.refuse(node, f"{n} is a function; call it", "name")
        elif n in MODULE_NAMES:
            self.refuse(node, f"{n} is a module; use a dotted function such as {n}.sqrt(x)", "name")
        elif names is not None and n not in names:
            self.refuse(node, f"unknown name {n!r}: not a parameter, assigned variable, "
                              "function or constant", "name")

    def call(self, node: ast.Call, names: frozenset[str] | None) -> None:
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
            elif _function_name(callee):
                callee = _function_name(callee)
                want = FUNCTIONS[callee]
            else:
                self.refuse(func, f"unknown function {callee!r}", "name")
                want = len(node.args)
        else:
            dotted = _dotted(func)
            callee = _resolve_dotted(dotted) if dotted else None
            shown = dotted or ast.unparse(func)
            if callee is None or callee not in FUNCTIONS:
                self.refuse(func, f"{shown!r} is not a function of the language", "name")
                want = len(node.args)
            else:
                want = FUNCTIONS[callee]
        if len(node.args) != want:
            self.refuse(node, f"{shown}() takes {want} argument{'s' * (want != 1)}, "
                              f"got {len(node.args)}", "arity")
        for a in node.args:
            self.expr(a, names)
        if callee == "power" and len(node.args) == 2:
            self.exponent(node.args[1])

    def unsupported(self, node: ast.AST, what: str | None = None) -> None:
        what = what or _DESCRIBE.get(type(node))
        if what is None and isinstance(node, ast.BinOp):
            what = _DESCRIBE.get(type(node.op), type(node.op).__name__)
        if what is None and isinstance(node, ast.Compare):
            what = "comparison with 'is' or 'in'"
        what = what or type(node).__name__
        self.refuse(node, f"{what} is not part of the language")

    # programs
    def module(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef):
                if stmt.name in self.functions:
                    self.refuse(stmt, f"function {stmt.name!r} is defined twice", "name")
                elif stmt.name.startswith("_") or stmt.name in CONSTANTS or _function_name(stmt.name) \
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
        self.block(_without_docstring(fn.body), frozenset(assigned))
        cost = _static_cost(fn.body)
        if cost > self.limits.max_operations:  # nested constant loops: refuse before running
            self.limit(fn, f"{fn.name}() needs at least {cost:.0f} operations per call",
                       "max_operations", self.limits.max_operations, cost)

    def local_name(self, node: ast.AST, name: str) -> None:
        if name.startswith("_") or name in CONSTANTS or _function_name(name) or name in MODULE_NAMES \
                or name in self.functions or name == "range":
            self.refuse(node, f"{name!r} cannot be a variable name", "name")

    def block(self, body: list[ast.stmt], names: frozenset[str]) -> None:
        for stmt in body:
            self.statement(stmt, names)

    def target(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.local_name(node, node.id)
        else:
            self.refuse(node, "only a plain name can be assigned to")

    def statement(self, node: ast.stmt, names: frozenset[str]) -> None:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                self.target(t)
            self.expr(node.value, names)
        elif isinstance(node, ast.AugAssign) and type(node.op) in _BINARY_OPS:
            self.target(node.target)
            self.expr(node.value, names)
            if isinstance(node.op, ast.Pow):
                self.exponent(node.value)
        elif isinstance(node, ast.Return):
            if node.value is None:
                self.refuse(node, "return needs a value")
            else:
                self.expr(node.value, names)
        elif isinstance(node, ast.If):
            self.expr(node.test, names)
            self.block(node.body, names)
            self.block(node.orelse, names)
        elif isinstance(node, ast.For):
            self.for_loop(node, names)
        elif isinstance(node, ast.Pass):
            pass
        elif isinstance(node, ast.FunctionDef):
            self.refuse(node, "functions must be defined at the top level, not nested")
        elif isinstance(node, ast.Expr):
            self.refuse(node, "a bare expression does nothing here; assign or return it")
        else:
            self.unsupported(node)

    def for_loop(self, node: ast.For, names: frozenset[str]) -> None:
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
                self.expr(a, names)
            bounds = [_constant_value(a) for a in it.args]
            if all(b is not None for b in bounds):  # known now: refuse before any work starts
                trips = _trip_count(bounds, self.loc, it)
                if trips > self.limits.max_loop_trips:
                    self.limit(it, f"the loop runs {trips} times", "max_loop_trips",
                               self.limits.max_loop_trips, trips)
        self.block(node.body, names)


def _node_count(node: ast.AST) -> int:
    """Expression nodes the interpreter evaluates (each counts as one operation)."""
    return sum(1 for n in ast.walk(node) if isinstance(n, ast.expr)
               and not isinstance(getattr(n, "ctx", None), ast.Store))


def _static_cost(body: list[ast.stmt]) -> float:
    """A lower bound on the operations one run of ``body`` takes: loops with constant bounds
    multiply their bodies (unknown bounds count once and are checked when they run)."""
    total = 0.0
    for stmt in body:
        if isinstance(stmt, ast.For):
            bounds = [_constant_value(a) for a in getattr(stmt.iter, "args", [])]
            trips = 1
            if bounds and all(b is not None and math.isfinite(b) and b.is_integer() for b in bounds) \
                    and not (len(bounds) == 3 and bounds[2] == 0):
                trips = _range_length([int(b) for b in bounds])
            total += _node_count(stmt.iter) + trips * _static_cost(stmt.body)
        elif isinstance(stmt, ast.If):
            total += _node_count(stmt.test) + min(_static_cost(stmt.body), _static_cost(stmt.orelse))
        else:
            total += _node_count(stmt)
    return total


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    """A def's statements after its docstring, if it has one (the only string allowed)."""
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return body[1:]
    return body


def _trip_count(bounds: list[float], loc: tuple[str, ...], node: ast.AST) -> int:
    for b in bounds:
        if not (math.isfinite(b) and float(b).is_integer()):
            raise _invalid(loc, node, f"range() needs whole numbers, got {b:g}", "range")
    ints = [int(b) for b in bounds]
    if len(ints) == 3 and ints[2] == 0:
        raise _invalid(loc, node, "range() step must not be zero", "range")
    return _range_length(ints)


def _range_length(bounds: list[int]) -> int:
    """``len(range(*bounds))`` without its overflow: ``len`` of a range longer than 2**63 raises
    OverflowError, and the bounds may be any size here (``range(10**20)``, ``range(x)`` at 1e300)."""
    start, stop, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds, 1)[:3]
    return max(0, -((start - stop) // step))


def _check_kinds(tree: ast.AST, checker: _Checker, allowed: tuple[type, ...]) -> None:
    """Refuse node kinds outside the language before the structured walk, wherever they hide
    (operators and contexts have no position of their own: report their parent's)."""
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            if not isinstance(child, allowed):
                checker.unsupported(child if hasattr(child, "lineno") else parent,
                                    what=_DESCRIBE.get(type(child)))


# --- the result of compiling ----------------------------------------------------------------

@dataclass(frozen=True)
class Formula:
    """A checked expression or program, ready to run on a backend.

    ``variables``: free variables (expressions: sorted by name; programs: the function's
    parameters in order). ``is_program``: True when Python control flow runs point by point.
    ``key``: normalised text, equal for texts that differ only in spacing or redundant brackets.
    """

    variables: tuple[str, ...]
    is_program: bool
    key: str
    tree: ast.AST = field(repr=False, compare=False)
    function: str | None = None
    limits: Limits = field(default_factory=Limits, repr=False, compare=False)
    loc: tuple[str, ...] = field(default=("body", "expression"), repr=False, compare=False)

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
            return ops.tensor(self._evaluate(_Interpreter(self, ops, replay=path), values))

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
        interpreter = _Interpreter(self, backend_ops("numpy", dtype), record=True)
        with np.errstate(all="ignore"):
            self._evaluate(interpreter, tuple(columns))
        shape = np.broadcast_shapes(*(np.shape(c) for c in columns))
        return np.stack([np.broadcast_to(np.asarray(interpreter.branch_tests[id(n)], dtype=bool), shape)
                         for n in self.branches], axis=-1)

    @functools.cached_property
    def operations(self) -> int:
        """An expression's operations: every node is evaluated once (both sides of a branch)."""
        return _node_count(self.tree)

    def path(self, values: tuple[float, ...], dtype: str = "float64") -> tuple[tuple[Any, ...], int]:
        """The decisions (branches taken, loop bounds) a program makes at one point, and the
        operations it runs along them, found by running it on plain numpy numbers: fast, and
        every limit is enforced on the way."""
        interpreter = _Interpreter(self, backend_ops("numpy", dtype), record=True)
        with np.errstate(all="ignore"):
            self._evaluate(interpreter, values)
        return tuple(interpreter.decisions), interpreter.operations

    def _evaluate(self, interpreter: _Interpreter, values: tuple[Any, ...]) -> Any:
        if len(values) != len(self.variables):
            raise TypeError(f"expected {len(self.variables)} values ({', '.join(self.variables)}), "
                            f"got {len(values)}")
        try:
            if self.is_program:
                return interpreter.call_function(self.function, list(values), self.tree)
            return interpreter.expr(self.tree.body, dict(zip(self.variables, values, strict=True)))
        except RecursionError:
            raise _over_limit(self.loc, _At(1, 0), "the program nests calls too deeply",
                              "max_recursion_depth", self.limits.max_recursion_depth) from None


def _check_variable_count(variables: Any, limits: Limits, loc: tuple[str, ...]) -> None:
    if len(variables) > limits.max_variables:
        raise _over_limit(loc, _At(1, 0), f"{len(variables)} free variables", "max_variables",
                          limits.max_variables, len(variables))


def compile_expression(text: str, limits: Limits, *, loc: tuple[str, ...] = ("body", "expression")) -> Formula:
    """Check an expression; its free variables are sorted by name."""
    tree = _parse(text, "eval", limits, loc)
    _check_size(tree, limits, loc)
    checker = _Checker(limits, loc)
    _check_kinds(tree, checker, _EXPRESSION_NODES)
    checker.raise_if_any()
    checker.expr(tree.body, None)
    checker.raise_if_any()
    variables = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                        and n.id not in CONSTANTS and n.id not in MODULE_NAMES
                        and not _function_name(n.id)})
    _check_variable_count(variables, limits, loc)
    return Formula(tuple(variables), False, ast.unparse(tree), tree, None, limits, loc)


def compile_program(source: str, function: str, limits: Limits, *,
                    loc: tuple[str, ...] = ("body", "program")) -> Formula:
    """Check a program of ``def``s; ``function`` names the one to differentiate."""
    tree = _parse(source, "exec", limits, loc)
    _check_size(tree, limits, loc)
    checker = _Checker(limits, loc)
    _check_kinds(tree, checker, _EXPRESSION_NODES + _PROGRAM_NODES)
    checker.raise_if_any()
    checker.module(tree)
    checker.raise_if_any()
    if function not in checker.functions:
        defined = ", ".join(checker.functions) or "none"
        raise InvalidInput(
            f"The program defines no function {function!r} (it defines: {defined}).",
            errors=[{"loc": [*loc[:-1], "function"], "msg": f"no function {function!r} in the program",
                     "type": "language.function"}])
    params = tuple(p.arg for p in checker.functions[function].args.args)
    _check_variable_count(params, limits, loc)
    return Formula(params, True, f"{function}:{ast.unparse(tree)}", tree, function, limits, loc)


# --- backends -------------------------------------------------------------------------------

class BackendOps:
    """One backend's numbers: constants of the formula's dtype and the whitelisted functions.

    Composite functions (swish, clip, ...) are written once here in terms of primitives, so both
    backends compute the same formula.
    """

    def __init__(self, backend: str, dtype: str, primitives: dict[str, Callable[..., Any]],
                 tensor: Callable[[Any], Any], cast: Callable[[Any], Any]) -> None:
        self.backend, self.dtype = backend, dtype
        self.tensor = tensor  # a number or tensor → a tensor of `dtype`
        self.cast = cast  # a boolean tensor → 1.0/0.0 of `dtype`
        p = primitives
        composites = {
            "swish": lambda x: x * p["sigmoid"](x),
            "silu": lambda x: x * p["sigmoid"](x),
            "clip": lambda x, lo, hi: p["minimum"](p["maximum"](x, lo), hi),
            "square": lambda x: x * x,
            # the exact (erf) GELU; TensorFlow's own loses ~1e-9 in float64
            "gelu": lambda x: 0.5 * x * (1.0 + p["erf"](x * _SQRT_HALF)),
            "where": lambda c, a, b: p["where"](c != 0, a, b),
        }
        self.functions = {**p, **composites}
        missing = set(FUNCTIONS) - set(self.functions)
        assert not missing, f"{backend} lacks {missing}"


@functools.cache
def backend_ops(backend: str, dtype: str) -> BackendOps:
    if dtype not in DTYPES:
        raise InvalidInput(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.",
                           errors=[{"loc": ["body", "dtype"], "msg": "unknown dtype", "type": "enum"}])
    if backend == "jax":
        return _jax_ops(dtype)
    if backend == "tensorflow":
        return _tensorflow_ops(dtype)
    if backend == "numpy":  # internal: finding a program's path, see Formula.path
        return _numpy_ops(dtype)
    raise InvalidInput(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}.",
                       errors=[{"loc": ["body", "backend"], "msg": "unknown backend", "type": "enum"}])


def _jax_ops(dtype: str) -> BackendOps:
    import jax
    import jax.numpy as jnp
    from jax.scipy import special

    from labcrunch_service import backends

    backends.configure()
    dt = jnp.dtype(dtype)
    names = ("sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh exp "
             "expm1 log log1p log2 log10 sqrt cbrt abs sign floor ceil minimum maximum power where")
    primitives = {n: getattr(jnp, n) for n in names.split()}
    primitives.update(
        sigmoid=jax.nn.sigmoid, relu=jax.nn.relu, elu=jax.nn.elu, selu=jax.nn.selu,
        softplus=jax.nn.softplus,
        erf=special.erf, erfc=special.erfc,
    )
    return BackendOps("jax", dtype, primitives,
                      tensor=lambda v: jnp.asarray(v, dtype=dt),
                      cast=lambda b: jnp.asarray(b, dtype=dt))


def _numpy_ops(dtype: str) -> BackendOps:
    from scipy import special

    dt = np.dtype(dtype)
    names = ("sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh exp "
             "expm1 log log1p log2 log10 sqrt cbrt abs sign floor ceil minimum maximum power where")
    primitives = {n: getattr(np, n) for n in names.split()}
    selu_alpha, selu_scale = 1.6732632423543772, 1.0507009873554805  # as jax.nn.selu, tf.nn.selu
    primitives.update(
        sigmoid=special.expit, relu=lambda x: np.maximum(x, 0), softplus=lambda x: np.logaddexp(0, x),
        elu=lambda x: np.where(x > 0, x, np.expm1(x)),
        selu=lambda x: selu_scale * np.where(x > 0, x, selu_alpha * np.expm1(x)),
        erf=special.erf, erfc=special.erfc,
    )
    return BackendOps("numpy", dtype, primitives, tensor=lambda v: np.asarray(v, dtype=dt),
                      cast=lambda b: np.asarray(b, dtype=dt))


def _tensorflow_ops(dtype: str) -> BackendOps:
    from labcrunch_service import backends

    tf = backends.tensorflow()
    dt = tf.as_dtype(dtype)
    ln2, ln10 = math.log(2.0), math.log(10.0)
    primitives = {
        "sin": tf.sin, "cos": tf.cos, "tan": tf.tan, "arcsin": tf.asin, "arccos": tf.acos,
        "arctan": tf.atan, "arctan2": tf.atan2, "sinh": tf.sinh, "cosh": tf.cosh, "tanh": tf.tanh,
        "arcsinh": tf.asinh, "arccosh": tf.acosh, "arctanh": tf.atanh, "exp": tf.exp,
        "expm1": tf.math.expm1, "log": tf.math.log, "log1p": tf.math.log1p,
        "log2": lambda x: tf.math.log(x) / ln2, "log10": lambda x: tf.math.log(x) / ln10,
        "sqrt": tf.sqrt, "cbrt": lambda x: tf.sign(x) * tf.pow(tf.abs(x), 1.0 / 3.0),
        "abs": tf.abs, "sign": tf.sign, "floor": tf.floor, "ceil": tf.math.ceil,
        "minimum": tf.minimum, "maximum": tf.maximum, "power": tf.pow, "where": tf.where,
        "sigmoid": tf.sigmoid, "relu": tf.nn.relu, "elu": tf.nn.elu, "selu": tf.nn.selu,
        "softplus": tf.math.softplus,
        "erf": tf.math.erf, "erfc": tf.math.erfc,
    }

    def tensor(v: Any) -> Any:
        if isinstance(v, tf.Tensor | tf.Variable) and v.dtype == dt:
            return v
        return tf.cast(v, dt) if isinstance(v, tf.Tensor | tf.Variable) else tf.constant(v, dtype=dt)

    return BackendOps("tensorflow", dtype, primitives, tensor=tensor, cast=lambda b: tf.cast(b, dt))


# --- the interpreter ------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Interpreter:
    """Evaluates a checked tree with one backend's operations; one instance per evaluation.

    Plain numbers stay Python numbers (folded with IEEE semantics) until they meet a tensor, so
    they adopt the tensor's dtype; function arguments become tensors of the formula's dtype.
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
        self.operations = 0
        self.depth = 0
        self.functions: dict[str, ast.FunctionDef] = (
            {f.name: f for f in formula.tree.body} if formula.is_program else {})

    # expressions
    def expr(self, node: ast.AST, env: dict[str, Any]) -> Any:
        if self.formula.is_program:
            self.operations += 1
            if self.operations > self.limits.max_operations:
                raise _over_limit(self.loc, node, "the program ran too many operations",
                                  "max_operations", self.limits.max_operations, self.operations)
            if self.operations % 1024 == 0:
                check_deadline()
        method = getattr(self, "e_" + type(node).__name__)
        return method(node, env)

    def e_Constant(self, node: ast.Constant, env: dict[str, Any]) -> Any:
        return _literal(node.value)

    def e_Name(self, node: ast.Name, env: dict[str, Any]) -> Any:
        if node.id in env:
            return env[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise _invalid(self.loc, node, f"{node.id!r} is used before it is assigned", "unassigned")

    def e_Attribute(self, node: ast.Attribute, env: dict[str, Any]) -> Any:
        return CONSTANTS[_resolve_dotted(_dotted(node))]

    def e_BinOp(self, node: ast.BinOp, env: dict[str, Any]) -> Any:
        return self.binary(_BINARY_OPS[type(node.op)], self.expr(node.left, env),
                           self.expr(node.right, env))

    def binary(self, op: str, a: Any, b: Any) -> Any:
        if _is_number(a) and _is_number(b):
            if op == "**" and isinstance(a, int) and isinstance(b, int) and 0 <= b <= 64 \
                    and abs(a) <= 2**16:
                return _literal(a**b)  # exact small integer powers, e.g. loop bounds
            return _fold(op, a, b)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "**":
            return a**b
        floor = self.ops.functions["floor"]
        a, b = self.ops.tensor(a), self.ops.tensor(b)
        if op == "//":
            return floor(a / b)
        return a - b * floor(a / b)  # "%", with the sign of b as in Python

    def e_UnaryOp(self, node: ast.UnaryOp, env: dict[str, Any]) -> Any:
        v = self.expr(node.operand, env)
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

    def e_BoolOp(self, node: ast.BoolOp, env: dict[str, Any]) -> Any:
        truths = [self.truth(self.expr(v, env)) for v in node.values]
        result = truths[0]
        for t in truths[1:]:
            if isinstance(node.op, ast.And):
                result = result * t
            else:  # or: 1 - (1 - a)(1 - b)
                result = self.binary("-", 1.0, self.binary("*", 1.0 - result, 1.0 - t))
        return result

    def e_Compare(self, node: ast.Compare, env: dict[str, Any]) -> Any:
        left = self.expr(node.left, env)
        result: Any = 1.0
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.expr(right_node, env)
            outcome = self.compare(_COMPARE_OPS[type(op)], left, right)
            result = self.binary("*", result, outcome)
            left = right
        return result

    def compare(self, op: str, a: Any, b: Any) -> Any:
        if not (_is_number(a) and _is_number(b)):
            a, b = self.ops.tensor(a), self.ops.tensor(b)
        outcome = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b,
                   "==": a == b, "!=": a != b}[op]
        return float(outcome) if isinstance(outcome, bool | np.bool_) else self.ops.cast(outcome)

    def e_IfExp(self, node: ast.IfExp, env: dict[str, Any]) -> Any:
        if self.formula.is_program:  # Python semantics: only the branch taken runs
            taken = node.body if self.as_bool(node.test, self.expr(node.test, env)) else node.orelse
            return self.expr(taken, env)
        if self.branch_choice is not None:  # the side this group of points takes
            return self.expr(node.body if self.branch_choice[id(node)] else node.orelse, env)
        test, body, orelse = (self.expr(n, env) for n in (node.test, node.body, node.orelse))
        if self.branch_tests is not None:
            self.branch_tests[id(node)] = test != 0
        if _is_number(test):
            return body if test != 0 else orelse
        return self.ops.functions["where"](test, self.ops.tensor(body), self.ops.tensor(orelse))

    def e_Call(self, node: ast.Call, env: dict[str, Any]) -> Any:
        args = [self.expr(a, env) for a in node.args]
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.functions:
            return self.call_function(func.id, args, node)
        name = _function_name(func.id) if isinstance(func, ast.Name) else _resolve_dotted(_dotted(func))
        return self.ops.functions[name](*(self.ops.tensor(a) for a in args))

    def as_bool(self, node: ast.AST, value: Any) -> bool:
        """A Python bool for a program's ``if``: taken from a concrete value, or replayed."""
        if self.replay is not None:
            return self.replayed(node)
        try:
            outcome = bool(value != 0)
        except Exception:  # a tracer under jit/vmap has no concrete value
            raise _invalid(self.loc, node, "this condition depends on a variable and programs run "
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
            raise _invalid(self.loc, node, "range() bounds must be known numbers, not values "
                                           "that are being differentiated", "range") from None
        self.decisions.append(number)
        return number

    def replayed(self, node: ast.AST) -> Any:
        try:
            return next(self.replay)
        except StopIteration:  # only if a path from another program is replayed
            raise _invalid(self.loc, node, "the recorded path does not fit this program",
                           "control-flow") from None

    # programs
    def call_function(self, name: str, args: list[Any], node: ast.AST) -> Any:
        fn = self.functions[name]
        if self.depth >= self.limits.max_recursion_depth:
            raise _over_limit(self.loc, node, f"calls to {name}() nest more than "
                                              f"{self.limits.max_recursion_depth} deep",
                              "max_recursion_depth", self.limits.max_recursion_depth)
        self.depth += 1
        try:
            env = dict(zip((p.arg for p in fn.args.args), args, strict=True))
            try:
                self.block(_without_docstring(fn.body), env)
            except _Return as done:
                return done.value
            raise _invalid(self.loc, fn, f"{name}() ended without a return", "no-return")
        finally:
            self.depth -= 1

    def block(self, body: list[ast.stmt], env: dict[str, Any]) -> None:
        for stmt in body:
            getattr(self, "s_" + type(stmt).__name__)(stmt, env)

    def s_Assign(self, node: ast.Assign, env: dict[str, Any]) -> None:
        value = self.expr(node.value, env)
        for target in node.targets:
            env[target.id] = value

    def s_AugAssign(self, node: ast.AugAssign, env: dict[str, Any]) -> None:
        current = self.e_Name(node.target, env)
        env[node.target.id] = self.binary(_BINARY_OPS[type(node.op)], current,
                                          self.expr(node.value, env))

    def s_Return(self, node: ast.Return, env: dict[str, Any]) -> None:
        raise _Return(self.expr(node.value, env))

    def s_Pass(self, node: ast.Pass, env: dict[str, Any]) -> None:
        pass

    def s_If(self, node: ast.If, env: dict[str, Any]) -> None:
        self.block(node.body if self.as_bool(node.test, self.expr(node.test, env)) else node.orelse, env)

    def s_For(self, node: ast.For, env: dict[str, Any]) -> None:
        bounds = [self.concrete_number(a, self.expr(a, env)) for a in node.iter.args]
        trips = _trip_count(bounds, self.loc, node.iter)
        if trips > self.limits.max_loop_trips:
            raise _over_limit(self.loc, node.iter, f"the loop runs {trips} times", "max_loop_trips",
                              self.limits.max_loop_trips, trips)
        for i in range(*(int(b) for b in bounds)):
            check_deadline()
            env[node.target.id] = i
            self.block(node.body, env)
