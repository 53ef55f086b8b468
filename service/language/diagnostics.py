"""Refusals with positions. Every error of the language is
:class:`~labcrunch_service.errors.InvalidInput` (422) or
:class:`~labcrunch_service.errors.LimitExceeded` (413, naming the limit) whose ``errors`` entries
carry ``loc`` (relative to the field the text came in, e.g. ``["expression"]``: the HTTP edge
adds ``"body"`` or ``"query"``), ``msg``, ``type`` and the 1-based ``line`` and ``column``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labcrunch_service.errors import InvalidInput, LimitExceeded


@dataclass(frozen=True)
class At:
    """A stand-in node carrying just a position, for errors found before there is a tree."""

    lineno: int
    col_offset: int


def position(node: Any) -> tuple[int, int]:
    """1-based (line, column) of an ast node or :class:`At`."""
    return getattr(node, "lineno", 1) or 1, (getattr(node, "col_offset", 0) or 0) + 1


def entry(loc: tuple[str, ...], node: Any, msg: str, kind: str) -> dict[str, Any]:
    line, column = position(node)
    return {"loc": [*loc], "msg": msg, "type": f"language.{kind}", "line": line, "column": column}


def invalid(loc: tuple[str, ...], node: Any, msg: str, kind: str) -> InvalidInput:
    line, column = position(node)
    return InvalidInput(f"line {line}, column {column}: {msg}", errors=[entry(loc, node, msg, kind)])


def over_limit(loc: tuple[str, ...], node: Any, msg: str, limit: str, maximum: Any,
               value: Any = None) -> LimitExceeded:
    line, column = position(node)
    return LimitExceeded(f"line {line}, column {column}: {msg} (limits.{limit} = {maximum})",
                         limit=limit, maximum=maximum, value=value,
                         errors=[entry(loc, node, msg, "limit")])
