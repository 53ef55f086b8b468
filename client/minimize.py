"""Minimisation of maths given as text: ``Client.minimize`` (``POST /v1/minimize``),
``Client.minimize_optimizers`` and their results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np

from labcrunch._arrays import array, number
from labcrunch._base import Call, endpoint, json_answer
from labcrunch._constants import LANDSCAPE_POINTS
from labcrunch._repr import ShortRepr
from labcrunch._types import Backend, DType

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: The optimisers the server offers (``Client.minimize_optimizers`` describes each).
Optimizer = Literal["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lbfgs"]


@dataclass(frozen=True, repr=False)
class RunHistory(ShortRepr):
    """One run's recorded steps; ``x[name][i]`` is the variable at ``step[i]``."""

    step: np.ndarray
    x: dict[str, np.ndarray]
    value: np.ndarray
    grad_norm: np.ndarray

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RunHistory:
        """A run's ``history`` from the server's JSON answer."""
        return cls(step=np.asarray(body["step"], dtype=np.int64),
                   x={k: array(v) for k, v in body["x"].items()},
                   value=array(body["value"]), grad_norm=array(body["grad_norm"]))

    def __repr__(self) -> str:
        first, last = (int(self.step[0]), int(self.step[-1])) if len(self.step) else (0, 0)
        return f"RunHistory({len(self.step)} entries, steps {first}..{last}, variables {', '.join(self.x)})"

    def points(self, variables: Sequence[str]) -> np.ndarray:
        """The path as an (entries, n_variables) array in ``variables`` order."""
        return np.column_stack([self.x[v] for v in variables])


@dataclass(frozen=True, repr=False)
class MinimizeRun(ShortRepr):
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
    def from_json(cls, body: Mapping[str, Any]) -> MinimizeRun:
        """One entry of ``runs`` from the server's JSON answer."""
        rate = body["learning_rate"]
        return cls(
            learning_rate=None if rate is None else float(rate),
            x={k: number(v) for k, v in body["x"].items()},
            value=number(body["value"]), grad_norm=number(body["grad_norm"]),
            steps_taken=int(body["steps_taken"]), converged=bool(body["converged"]),
            diverged=bool(body["diverged"]), history=RunHistory.from_json(body["history"]),
        )


@dataclass(frozen=True, repr=False)
class Landscape(ShortRepr):
    """The function on a grid over the visited region: ``value`` has shape (len(x[v]),) for one
    variable, (len(x[second]), len(x[first])) for two."""

    x: dict[str, np.ndarray]
    value: np.ndarray

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Landscape:
        return cls(x={k: array(v) for k, v in body["x"].items()}, value=array(body["value"]))


@dataclass(frozen=True, repr=False)
class MinimizeResult(ShortRepr):
    """The runs of one sweep and, for one or two variables, the function on a grid."""

    expression: str | None
    variables: tuple[str, ...]
    optimizer: str
    options: dict[str, float | bool]
    runs: list[MinimizeRun]
    landscape: Landscape | None
    backend: str
    dtype: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, expression: str | None = None) -> MinimizeResult:
        """The result from the server's JSON answer; ``expression`` (which the answer does not
        repeat) labels the plot."""
        grid = body.get("landscape")
        return cls(
            expression=expression, variables=tuple(body["variables"]), optimizer=body["optimizer"],
            options=dict(body["options"]), runs=[MinimizeRun.from_json(r) for r in body["runs"]],
            landscape=None if grid is None else Landscape.from_json(grid),
            backend=body["backend"], dtype=body["dtype"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]),
        )

    def plot(self, ax: Axes | None = None, *, path: str | Path | None = None) -> Axes:
        """The function and each run's path with its start and end marked (see
        :func:`labcrunch.plot.minimize_paths`), saved to ``path`` when given; returns the Axes.
        Needs matplotlib."""
        from labcrunch import plot

        return plot.minimize_paths(self, ax, path=path)


@dataclass(frozen=True, repr=False)
class HyperParameterInfo(ShortRepr):
    """One option of an optimiser: its default and the range the server accepts."""

    default: float | bool
    description: str
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool
    exclusive_maximum: bool

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> HyperParameterInfo:
        return cls(default=body["default"], description=body["description"],
                   minimum=body["minimum"], maximum=body["maximum"],
                   exclusive_minimum=bool(body["exclusive_minimum"]),
                   exclusive_maximum=bool(body["exclusive_maximum"]))


@dataclass(frozen=True, repr=False)
class OptimizerInfo(ShortRepr):
    """An optimiser the server offers: its update rule, default learning rate (None: it takes
    none), backends and options."""

    name: str
    summary: str
    default_learning_rate: float | None
    backends: tuple[str, ...]
    options: dict[str, HyperParameterInfo]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> OptimizerInfo:
        rate = body["default_learning_rate"]
        return cls(name=body["name"], summary=body["summary"],
                   default_learning_rate=None if rate is None else float(rate),
                   backends=tuple(body["backends"]),
                   options={k: HyperParameterInfo.from_json(v) for k, v in body["options"].items()})


def _optimizers(body: Sequence[Mapping[str, Any]]) -> list[OptimizerInfo]:
    return [OptimizerInfo.from_json(entry) for entry in body]


class MinimizeAPI:
    """The ``minimize`` methods of :class:`labcrunch.Client` and :class:`labcrunch.AsyncClient`."""

    @endpoint
    def minimize(
        self,
        expression: str,
        start: Mapping[str, float],
        optimizer: Optimizer = "sgd",
        learning_rate: float | Sequence[float] | None = None,
        *,
        steps: int | None = None,
        options: Mapping[str, float | bool] | None = None,
        tolerance: float | None = None,
        history_every: int | None = None,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        dtype: DType | None = None,
        backend: Backend | None = None,
        landscape: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[MinimizeResult]:
        """Run ``optimizer`` from ``start``, once per learning rate (``POST /v1/minimize``).

        Every run records its path (position, value, gradient norm); a list of learning rates
        is a sweep, as in the seed notebook. Options left None take the server's defaults.

        Example:
            >>> sweep = lc.minimize("x**2", {"x": 1.0}, "sgd", [0.1, 0.99], steps=50)
            >>> [run.learning_rate for run in sweep.runs]
            [0.1, 0.99]
            >>> sweep.runs[1].history.x["x"][:3]
            array([ 1.    , -0.98  ,  0.9604])
            >>> rosen = lc.minimize("(1 - x)**2 + 100*(y - x**2)**2", {"x": -1.2, "y": 1.0},
            ...                     "lbfgs", steps=100, tolerance=1e-9)
            >>> {k: round(v, 6) for k, v in rosen.runs[0].x.items()}, rosen.runs[0].converged
            ({'x': 1.0, 'y': 1.0}, True)

        Args:
            expression: The function to minimise, in the service's language.
            start: The start point: a number for every free variable.
            optimizer: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``, ``"adamw"``,
                ``"rmsprop"``, ``"adagrad"`` or ``"lbfgs"``.
            learning_rate: One rate, or several (one run each); None: the optimiser's default.
            steps: Steps per run.
            options: The optimiser's hyper-parameters by name (see :meth:`minimize_optimizers`).
            tolerance: Stop a run once the gradient norm is at most this.
            history_every: Record every n-th step (the start and the last step always).
            bounds: ``(low, high)`` per variable (either None for unbounded): projected steps.
            dtype: ``"float64"`` or ``"float32"``.
            backend: ``"jax"`` or ``"tensorflow"``.
            landscape: Grid points per axis of the function, for :meth:`MinimizeResult.plot`;
                by default 201 (one variable) or 81 (two), none for more; 0 for none.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            MinimizeResult: the runs with numpy histories, and the landscape.

        Raises:
            ValidationError: An unknown optimiser or option, a missing start value, a rate ≤ 0 (422).
            RequestTooLargeError: Steps, rates or history over a server limit (413).
        """
        if landscape is None:
            landscape = LANDSCAPE_POINTS.get(len(start))
        body: dict[str, Any] = {"expression": expression, "optimizer": optimizer,
                                "start": {k: float(v) for k, v in start.items()}}
        if isinstance(learning_rate, Sequence | np.ndarray):
            body["learning_rate"] = [float(r) for r in learning_rate]
        elif learning_rate is not None:
            body["learning_rate"] = float(learning_rate)
        extra = {"steps": steps, "options": None if options is None else dict(options),
                 "tolerance": tolerance, "history_every": history_every,
                 "bounds": None if bounds is None else {k: list(b) for k, b in bounds.items()},
                 "dtype": dtype, "backend": backend, "landscape": landscape or None}
        body |= {k: v for k, v in extra.items() if v is not None}

        def parse(response: httpx.Response) -> MinimizeResult:
            return MinimizeResult.from_json(response.json(), expression=expression)

        return Call("POST", "/v1/minimize", parse, json=body, timeout=timeout, max_retries=max_retries)

    @endpoint
    def minimize_optimizers(
        self, *, timeout: float | None = None, max_retries: int | None = None,
    ) -> Call[list[OptimizerInfo]]:
        """The optimisers :meth:`minimize` offers, with their options, defaults and ranges
        (``GET /v1/minimize/optimizers``).

        Example:
            >>> adam = {o.name: o for o in lc.minimize_optimizers()}["adam"]
            >>> adam.default_learning_rate, adam.options["beta_1"].default
            (0.001, 0.9)

        Args:
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            list[OptimizerInfo]: one entry per optimiser.
        """
        return Call("GET", "/v1/minimize/optimizers", json_answer(_optimizers),
                    timeout=timeout, max_retries=max_retries)
