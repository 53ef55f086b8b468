"""Text to syntax tree, within the size limits: text length, emptiness, bracket nesting (before
:func:`ast.parse`, which recurses on nesting), syntax, then the tree's node count and depth (so
that every later recursive walk of the tree is bounded)."""

from __future__ import annotations

import ast
import keyword
import re

from labcrunch_service.errors import InvalidInput
from labcrunch_service.language.diagnostics import At, invalid, over_limit
from labcrunch_service.settings import Limits


def parse(text: str, mode: str, limits: Limits, loc: tuple[str, ...]) -> ast.AST:
    """``ast.parse(text, mode)`` (``"eval"`` for an expression, ``"exec"`` for a program),
    refused with a position when the text or its tree is over a limit or is not Python."""
    tree = _parse(text, mode, limits, loc)
    _check_size(tree, limits, loc)
    return tree


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


def _parse(text: str, mode: str, limits: Limits, loc: tuple[str, ...]) -> ast.AST:
    if not isinstance(text, str):
        raise InvalidInput("The text must be a string.", errors=[{"loc": [*loc], "msg": "not a string",
                                                                   "type": "language.type"}])
    if len(text) > limits.max_text_length:
        raise over_limit(loc, At(1, 0), f"the text has {len(text)} characters",
                         "max_text_length", limits.max_text_length, len(text))
    if not text.strip():
        raise invalid(loc, At(1, 0), "the text is empty", "empty")
    deepest, line, column = _bracket_depth(text)
    if deepest > limits.max_nesting_depth:  # checked before ast.parse, which recurses on nesting
        raise over_limit(loc, At(line, column - 1), f"brackets nest {deepest} deep",
                         "max_nesting_depth", limits.max_nesting_depth, deepest)
    try:
        return ast.parse(text, mode=mode)
    except SyntaxError as exc:
        if "integer string conversion" in exc.msg:  # a decimal literal of over 4,300 digits
            raise invalid(loc, At(exc.lineno or 1, 0), "an integer literal of over 4,300 digits is "
                          "too large: numbers are float64, at most about 1.8e308", "number") from None
        product = juxtaposed(text)
        if product is not None:
            line, column, left, right = product
            raise invalid(loc, At(line, column), f"multiplication must be written: {left}*{right}",
                          "multiplication") from None
        line = exc.lineno or 1
        if exc.offset:
            where = At(line, exc.offset - 1)
        else:  # the text ended too early: point just past its last character
            lines = text.splitlines() or [""]
            where = At(line, len(lines[min(line, len(lines)) - 1]))
        raise invalid(loc, where, f"syntax error: {exc.msg}", "syntax") from None
    except (RecursionError, MemoryError):
        raise over_limit(loc, At(1, 0), "the text is too deeply nested to parse",
                         "max_nesting_depth", limits.max_nesting_depth) from None
    except ValueError as exc:  # e.g. a NUL byte
        raise invalid(loc, At(1, 0), f"cannot parse: {exc}", "syntax") from None


#: The tokens that matter for spotting a product written without ``*`` (``2x``, ``2 pi x``):
#: strings and comments (skipped), numbers, names, brackets; anything else separates.
_TOKEN = re.compile(r"""
    (?P<skip>\#[^\n]*|'[^'\n]*'|"[^"\n]*"|'{3}.*?'{3}|"{3}.*?"{3})
  | (?P<number>(?:0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?)[jJ]?)
  | (?P<name>[^\W\d]\w*)
  | (?P<open>\() | (?P<close>\)) | (?P<space>[ \t]+)
""", re.VERBOSE | re.DOTALL)


def juxtaposed(text: str) -> tuple[int, int, str, str] | None:
    """The first two operands written side by side (``2x``, ``2 pi``, ``(a) b``), which Python
    refuses as a syntax error and people mean as a product: (line, 0-based column, left, right).
    Keywords (``x if c else y``, ``for i in``, ``not x``) are not operands."""
    left: tuple[str, int, int] | None = None  # the operand just before: text, line, column
    line, line_start, position = 1, 0, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # an operator, a comma, a newline...: what follows is not adjacent
            if text[position] == "\n":
                line, line_start = line + 1, position + 1
            left, position = None, position + 1
            continue
        kind, value = match.lastgroup, match.group()
        position = match.end()
        if kind == "space":
            continue
        if kind == "skip":  # a string or comment
            if "\n" in value:
                line, line_start = line + value.count("\n"), match.start() + value.rindex("\n") + 1
            left = None
            continue
        if kind == "name" and keyword.iskeyword(value):
            left = None
            continue
        if left is not None and kind in ("number", "name"):
            return left[1], left[2], left[0], value
        # a name or ")" followed by "(" is a call; after "(" nothing is adjacent to an operand
        left = None if kind == "open" else ("(…)" if kind == "close" else value, line,
                                            match.start() - line_start)
    return None


def _check_size(tree: ast.AST, limits: Limits, loc: tuple[str, ...]) -> None:
    """Count nodes and measure depth iteratively (no recursion on a tree not yet bounded)."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.max_ast_nodes:
            raise over_limit(loc, node, "the syntax tree has too many nodes", "max_ast_nodes",
                             limits.max_ast_nodes)
        if depth > limits.max_nesting_depth:
            raise over_limit(loc, node, f"the syntax tree nests deeper than {depth - 1} levels",
                             "max_nesting_depth", limits.max_nesting_depth, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
