"""The AI Feynman benchmark's formulas (tests/data/feynman/, see its README) and sympy as their
oracle at 40 significant digits.

Each formula is used verbatim: the CSV's spelling is already the language's (``arcsin``,
``ln``, ``gamma`` as a variable in 1/(gamma - 1)), so nothing is translated. Sympy reads the same
text with every name bound to a real symbol (so ``gamma`` is a variable there too) and ``ln``,
``arcsin``, ``arccos`` bound to its functions; that parsing is test code reading our own data
file, never the service's.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mpmath
import numpy as np
import sympy as sp
from sympy.parsing.sympy_parser import parse_expr, standard_transformations

DATA = Path(__file__).resolve().parent.parent / "data" / "feynman"
FILES = ("FeynmanEquations.csv", "BonusEquations.csv")
#: The CSV's function names, as sympy spells them.
SYMPY_FUNCTIONS = {"exp": sp.exp, "sqrt": sp.sqrt, "sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh,
                   "arcsin": sp.asin, "arccos": sp.acos, "ln": sp.log, "pi": sp.pi}
DIGITS = 40


@dataclass(frozen=True)
class Formula:
    """One row: ``name`` (e.g. ``I.6.2a``, ``test_12``), the formula's text, and each variable's
    sampling range. The variables are those the row lists by name (a few rows' "# variables"
    count disagrees with their list; the list is what the formula uses)."""

    name: str
    text: str
    ranges: dict[str, tuple[float, float]]

    @cached_property
    def symbols(self) -> dict[str, sp.Symbol]:
        return {v: sp.Symbol(v, real=True) for v in self.ranges}

    @cached_property
    def expression(self) -> sp.Expr:
        return parse_expr(self.text, local_dict={**SYMPY_FUNCTIONS, **self.symbols},
                          transformations=standard_transformations)

    def points(self, count: int, seed: int) -> dict[str, np.ndarray]:
        """``count`` points drawn uniformly from the row's ranges."""
        rng = np.random.default_rng(seed)
        return {v: rng.uniform(low, high, size=count) for v, (low, high) in self.ranges.items()}

    def oracle(self, points: dict[str, np.ndarray], variables: tuple[str, ...],
               order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Value (N,), gradient (N, n) and, for order 2, Hessian (N, n, n) at the points, in
        ``variables`` order: sympy's derivatives, evaluated with mpmath at 40 digits from the
        points' exact binary values, then rounded to float64."""
        symbols = [self.symbols[v] for v in variables]
        gradient = [sp.diff(self.expression, s) for s in symbols]
        entries = [self.expression, *gradient]
        if order == 2:
            entries += [sp.diff(g, s) for g in gradient for s in symbols]
        evaluate = sp.lambdify(symbols, entries, modules="mpmath")
        n, count = len(symbols), len(points[variables[0]])
        rows = []
        with mpmath.workdps(DIGITS):
            for i in range(count):
                rows.append([float(x) for x in evaluate(*(mpmath.mpf(float(points[v][i]))
                                                          for v in variables))])
        table = np.array(rows)
        hessian = table[:, 1 + n:].reshape(count, n, n) if order == 2 else None
        return table[:, 0], table[:, 1:1 + n], hessian


def formulas() -> list[Formula]:
    """The 100 Feynman equations and the 20 bonus equations, in file order."""
    out = []
    for file in FILES:
        with open(DATA / file, encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                if not row["Filename"]:
                    continue  # the files end in empty rows
                ranges = {}
                for i in range(1, 11):
                    name = row.get(f"v{i}_name")
                    if name:
                        ranges[name] = (float(row[f"v{i}_low"]), float(row[f"v{i}_high"]))
                out.append(Formula(row["Filename"], row["Formula"], ranges))
    return out
