"""Text to syntax tree, within the size limits: text length, emptiness, bracket nesting (before
:func:`ast.parse`, which recurses on nesting), syntax, then the tree's node count and depth (so
that every later recursive walk of the tree is bounded)."""

from __future__ import annotations

import ast

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
