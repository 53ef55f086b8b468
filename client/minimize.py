"""Client methods and result types for the minimize endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from labcrunch._arrays import array, number
from labcrunch._base import Call

# Grid points per axis asked for with a 1- or 2-variable minimisation, so plot() can draw the
# function itself (the server evaluates it; the client never evaluates expressions).
LANDSCAPE_POINTS = {1: 201, 2: 81}


@dataclass(frozen=True)
class RunHistory:
    """One run's recorded steps; ``x[name][i]`` is the variable at ``step[i]``."""

    step: np.ndarray
    x: dict[str, np.ndarray]
    value: np.ndarray
    grad_norm: np.ndarray

    def points(self, variables: tuple[str, ...]) -> np.ndarray:
        """The path as an (entries, n_variables) array in ``variables`` order."""
        return np.column_stack([self.x[v] for v in variables])


@dataclass(frozen=True)
class MinimizeRun:
    """One learning rate's run: where it ended, whether it converged or diverged, its path."""

    learning_rate: float | None
    x: dict[str, float]
    value: float
    grad_norm: float
    steps_taken: int
    converged: bool
    diverged: bool
    history: RunHistory

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MinimizeRun:
        h = body["history"]
        return cls(
            learning_rate=body["learning_rate"],
            x={k: number(v) for k, v in body["x"].items()},
            value=number(body["value"]), grad_norm=number(body["grad_norm"]),
            steps_taken=int(body["steps_taken"]), converged=bool(body["converged"]),
            diverged=bool(body["diverged"]),
            history=RunHistory(step=np.asarray(h["step"], dtype=np.int64),
                               x={k: array(v) for k, v in h["x"].items()},
                               value=array(h["value"]), grad_norm=array(h["grad_norm"])),
        )


@dataclass(frozen=True)
class MinimizeResult:
    """The runs of one sweep, and (for one or two variables) the function on a grid."""

    expression: str
    variables: tuple[str, ...]
    optimizer: str
    options: dict[str, Any]
    runs: list[MinimizeRun]
    landscape: dict[str, Any] | None  # {"x": {name: axis}, "value": array} or None
    backend: str
    dtype: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, expression: str, body: dict[str, Any]) -> MinimizeResult:
        grid = body.get("landscape")
        return cls(
            expression=expression, variables=tuple(body["variables"]), optimizer=body["optimizer"],
            options=body["options"], runs=[MinimizeRun.from_json(r) for r in body["runs"]],
            landscape=None if grid is None else {
                "x": {k: array(v) for k, v in grid["x"].items()}, "value": array(grid["value"])},
            backend=body["backend"], dtype=body["dtype"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]),
        )

    def _label(self, run: MinimizeRun) -> str:
        label = self.optimizer if run.learning_rate is None else f"{run.learning_rate:g}"
        if run.diverged:
            label += " (diverged)"
        return label

    def plot(self, ax: Any = None) -> Any:
        """The seed's figure: the function and each run's path, one colour per learning rate.

        One variable: the function as a grey curve and each run as dots joined by lines
        (variable, value). Two variables: contours of the function and each run's path in the
        plane. Needs matplotlib; returns the figure.
        """
        import matplotlib.pyplot as plt  # lazy: plotting is optional for the client

        if len(self.variables) > 2:
            raise ValueError(f"plot() draws one or two variables; this sweep has "
                             f"{len(self.variables)} ({', '.join(self.variables)})")
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 7))
        grid = self.landscape
        if len(self.variables) == 1:
            (name,) = self.variables
            if grid is not None:
                ax.plot(grid["x"][name], grid["value"], color="0.7")
            for run in self.runs:
                ax.plot(run.history.x[name], run.history.value, ".-", label=self._label(run))
            ax.set_xlabel(name)
            ax.set_ylabel(self.expression)
        else:
            first, second = self.variables
            if grid is not None:
                value = np.ma.masked_invalid(grid["value"])
                contours = ax.contour(grid["x"][first], grid["x"][second], value,
                                      levels=_contour_levels(value), colors="0.6", linewidths=0.7)
                ax.clabel(contours, fontsize="x-small", fmt="%.3g")
            for run in self.runs:
                ax.plot(run.history.x[first], run.history.x[second], ".-", label=self._label(run))
            ax.set_xlabel(first)
            ax.set_ylabel(second)
            ax.set_title(self.expression)
        title = "learning rate" if self.runs and self.runs[0].learning_rate is not None else None
        ax.legend(title=title, loc=0)
        return ax.figure


def _contour_levels(value: np.ma.MaskedArray, count: int = 20) -> Any:
    """Log-spaced levels for a positive function spanning decades (a narrow valley such as
    Rosenbrock's stays visible); otherwise ``count`` evenly spaced ones."""
    low, high = value.min(), value.max()
    if low is np.ma.masked or not (0 < low and high > 100 * low):
        return count
    return np.geomspace(low, high, count)


class MinimizeAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""

    def minimize(
        self,
        expression: str,
        start: dict[str, float],
        optimizer: str = "sgd",
        learning_rate: float | list[float] | None = None,
        *,
        steps: int | None = None,
        options: dict[str, float | bool] | None = None,
        tolerance: float | None = None,
        history_every: int | None = None,
        bounds: dict[str, tuple[float | None, float | None]] | None = None,
        dtype: str | None = None,
        backend: str | None = None,
        landscape: int | None = None,
    ) -> Any:
        """``POST /v1/minimize``: run ``optimizer`` from ``start`` at each learning rate.

        Returns a :class:`MinimizeResult` whose runs carry numpy histories. Options left None
        take the server's defaults (:meth:`minimize_optimizers` lists each optimiser's).
        ``landscape``: grid points per axis of the function for :meth:`MinimizeResult.plot`;
        by default 201 (one variable) or 81 (two), none for more; 0 for none.
        """
        if landscape is None:
            landscape = LANDSCAPE_POINTS.get(len(start))
        body: dict[str, Any] = {"expression": expression, "start": {k: float(v) for k, v in start.items()},
                                "optimizer": optimizer}
        if isinstance(learning_rate, list | tuple | np.ndarray):
            body["learning_rate"] = [float(r) for r in learning_rate]
        elif learning_rate is not None:
            body["learning_rate"] = float(learning_rate)
        extra = {"steps": steps, "options": options, "tolerance": tolerance,
                 "history_every": history_every, "bounds": bounds, "dtype": dtype,
                 "backend": backend, "landscape": landscape or None}
        body |= {k: v for k, v in extra.items() if v is not None}

        def parse(response: httpx.Response) -> MinimizeResult:
            return MinimizeResult.from_json(expression, response.json())

        return self._send(Call("POST", "/v1/minimize", json=body, parse=parse))

    def minimize_optimizers(self) -> Any:
        """``GET /v1/minimize/optimizers``: each optimiser's options, defaults and ranges."""
        return self._send(Call("GET", "/v1/minimize/optimizers"))
