"""Minimizing a function of named variables: the plan, its checks, and the runs it produces.

A *sweep* is one optimizer started from one point with one or several learning rates; each
rate gives one *run*. Every run records its history from the start point (step 0) onwards, so
``steps`` steps give ``steps + 1`` entries when ``history_every`` is 1. A run stops early when
the gradient norm falls to ``tolerance`` (``converged``) or at the first non-finite position,
value or gradient (``diverged``; that entry is the last one in its history). With ``bounds``
the gradient norm is that of the projected gradient: components pushing out of the box at an
active bound do not count. Both backends implement exactly these semantics (:mod:`.on_jax`,
:mod:`.on_tensorflow`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput, LimitExceeded, located
from labcrunch_service.gradient.derivatives import differentiate
from labcrunch_service.language import Formula, compile_expression, normalized_keys
from labcrunch_service.minimize import on_jax, on_tensorflow, optimizers
from labcrunch_service.minimize.types import Landscape, Objective, Plan, Run, Sweep
from labcrunch_service.settings import Limits, Settings


def _invalid(detail: str, loc: list[Any], msg: str, kind: str) -> InvalidInput:
    return InvalidInput(detail, errors=[{"loc": ["body", *loc], "msg": msg, "type": kind}])


def plan_sweep(
    variables: tuple[str, ...],
    *,
    start: Mapping[str, float],
    optimizer: str,
    learning_rate: float | list[float] | None,
    options: Mapping[str, Any],
    steps: int,
    tolerance: float | None,
    history_every: int,
    bounds: Mapping[str, tuple[float | None, float | None]] | None,
    dtype: str,
    backend: str,
    limits: Limits,
) -> Plan:
    """Check a request against the function's variables and the limits; InvalidInput/LimitExceeded."""
    spec, hyper_parameters = optimizers.resolve(optimizer, dict(options), backend)
    start = normalized_keys(start, ("body", "start"))  # names as the expression's are read
    bounds = None if bounds is None else normalized_keys(bounds, ("body", "bounds"))
    if not variables:
        raise _invalid("The expression has no variables: there is nothing to minimize.",
                       ["expression"], "no variables", "value")

    missing = [v for v in variables if v not in start]
    extra = [k for k in start if k not in variables]
    if missing or extra:
        errors = [{"loc": ["body", "start", v], "msg": "missing: a variable of the expression",
                   "type": "missing"} for v in missing]
        errors += [{"loc": ["body", "start", k], "msg": "not a variable of the expression",
                    "type": "extra"} for k in extra]
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(extra)}"] if extra else [])
        raise InvalidInput(
            f"start must give exactly the variables ({', '.join(variables) or 'none'}): "
            + "; ".join(parts) + ".",
            errors=errors,
        )
    largest = float(np.finfo(dtype).max)
    for name in variables:
        if abs(start[name]) > largest:
            raise _invalid(f"start {name}={start[name]} is beyond the range of {dtype}.",
                           ["start", name], f"not representable in {dtype}", "value")

    if spec.default_learning_rate is None:
        if learning_rate is not None:
            raise _invalid(f"{optimizer} chooses its own step length by line search; "
                           "omit learning_rate.", ["learning_rate"], "not used by this optimizer",
                           "unsupported")
        rates: tuple[float | None, ...] = (None,)
    elif learning_rate is None:
        rates = (spec.default_learning_rate,)
    else:
        rates = tuple(learning_rate) if isinstance(learning_rate, list) else (learning_rate,)
    if len(rates) > limits.max_learning_rates:
        raise LimitExceeded(f"{len(rates)} learning rates asked for; at most "
                            f"{limits.max_learning_rates} per sweep (limits.max_learning_rates).",
                            limit="max_learning_rates", maximum=limits.max_learning_rates,
                            value=len(rates))
    if steps > limits.max_steps:
        raise LimitExceeded(f"{steps} steps asked for; at most {limits.max_steps} per run "
                            "(limits.max_steps).", limit="max_steps", maximum=limits.max_steps,
                            value=steps)

    lower = np.full(len(variables), -np.inf)
    upper = np.full(len(variables), np.inf)
    for name, (low, high) in (bounds or {}).items():
        if name not in variables:
            raise _invalid(f"bounds names {name!r}, which is not a variable of the expression "
                           f"({', '.join(variables) or 'none'}).", ["bounds", name],
                           "not a variable of the expression", "extra")
        i = variables.index(name)
        lower[i] = -np.inf if low is None else low
        upper[i] = np.inf if high is None else high
        if not lower[i] < upper[i]:
            raise _invalid(f"bounds for {name}: the lower bound {low} must be below the upper "
                           f"bound {high}.", ["bounds", name], "lower bound not below upper",
                           "value")
        if not lower[i] <= start[name] <= upper[i]:
            raise _invalid(f"start {name}={start[name]} lies outside its bounds [{low}, {high}].",
                           ["start", name], "outside bounds", "value")

    plan = Plan(
        optimizer=optimizer,
        hyper_parameters=hyper_parameters,
        learning_rates=rates,
        start=np.array([start[v] for v in variables], dtype=dtype),
        lower=lower.astype(dtype),
        upper=upper.astype(dtype),
        steps=steps,
        # past `steps` a larger n records the same (the start and the last step): clamping keeps
        # step arithmetic in int64 and lets such requests share one compiled program
        history_every=min(history_every, max(steps, 1)),
        tolerance=tolerance,
        dtype=dtype,
    )
    entries = len(rates) * plan.history_length()
    if entries > limits.max_history_entries:
        raise LimitExceeded(
            f"{len(rates)} runs × {plan.history_length()} history entries = {entries}; at most "
            f"{limits.max_history_entries} are returned (limits.max_history_entries): raise "
            "history_every or ask for fewer steps or rates.",
            limit="max_history_entries", maximum=limits.max_history_entries, value=entries,
        )
    values = entries * (len(variables) + 2)  # each entry: every variable, value, grad_norm
    if values > limits.max_history_values:
        raise LimitExceeded(
            f"{entries} history entries × ({len(variables)} variables + value + grad_norm) = "
            f"{values} numbers; at most {limits.max_history_values} are returned "
            "(limits.max_history_values): raise history_every or ask for fewer steps or rates.",
            limit="max_history_values", maximum=limits.max_history_values, value=values,
        )
    return plan


def backend_sweep(backend: str) -> Callable[[Objective, Plan], list[Run]]:
    """The one place that picks a backend's ``run_sweep`` (jax or tensorflow)."""
    return on_tensorflow.run_sweep if backend == "tensorflow" else on_jax.run_sweep


def check_landscape(variables: tuple[str, ...], points: int, limits: Limits) -> None:
    """A landscape needs one or two variables and ``points**n`` within limits.max_points."""
    if len(variables) > 2:
        raise _invalid(f"A landscape can be drawn for one or two variables; this expression has "
                       f"{len(variables)} ({', '.join(variables)}).", ["landscape"],
                       "one or two variables only", "value")
    total = points ** len(variables)
    if total > limits.max_points:
        raise LimitExceeded(f"The landscape grid has {total} points; at most {limits.max_points} "
                            "(limits.max_points).", limit="max_points", maximum=limits.max_points,
                            value=total)


def landscape_axes(runs: list[Run], n_variables: int, points: int) -> list[np.ndarray]:
    """Per variable, ``points`` values spanning the runs' finite positions, with a margin.

    Diverged runs are left out (when any other run is left) so that a blow-up does not
    shrink the others' paths to a dot.
    """
    shown = [run for run in runs if not run.diverged] or runs
    visited = np.concatenate([run.history_x for run in shown])
    axes = []
    for i in range(n_variables):
        column = visited[:, i][np.isfinite(visited[:, i])]
        low, high = (column.min(), column.max()) if column.size else (-1.0, 1.0)
        margin = 0.1 * (high - low) if high > low else max(1.0, abs(low))
        axes.append(np.linspace(low - margin, high + margin, points))
    return axes


def evaluate_landscape(formula: Formula, runs: list[Run], points: int, *, backend: str,
                       dtype: str, limits: Limits) -> Landscape:
    axes = landscape_axes(runs, len(formula.variables), points)
    grid = np.meshgrid(*axes)  # "xy" indexing: (n_y, n_x) for two variables
    at = {name: g.ravel() for name, g in zip(formula.variables, grid, strict=True)}
    value = differentiate(formula, at, backend=backend, dtype=dtype, limits=limits).value
    return Landscape(tuple(axes), value.reshape(grid[0].shape))


def minimize_expression(expression: str, *, backend: str, limits: Limits,
                        landscape: int | None = None, **request: Any) -> Sweep:
    """Compile ``expression`` in the service's language, check the request, run the sweep.

    ``request`` holds the keyword arguments of :func:`plan_sweep`; ``landscape`` asks for the
    function on a grid of that many points per axis as well (see :class:`Landscape`).
    """
    with located("body"):
        formula = compile_expression(expression, limits)
    objective = Objective(formula.key, formula.variables, formula.to_callable)
    plan = plan_sweep(objective.variables, backend=backend, limits=limits, **request)
    if landscape is not None:
        check_landscape(formula.variables, landscape, limits)
    runs = backend_sweep(backend)(objective, plan)
    grid = None if landscape is None else evaluate_landscape(
        formula, runs, landscape, backend=backend, dtype=plan.dtype, limits=limits)
    return Sweep(objective.variables, plan.optimizer, plan.hyper_parameters, runs, grid,
                 formula.constants)


def warmup(settings: Settings) -> None:
    """Compile the seed's sweep (SGD on x**2 at three rates) so the first request is quick."""
    minimize_expression("x**2", backend="jax", limits=settings.limits, start={"x": 1.0},
                        optimizer="sgd", learning_rate=[0.1, 0.99, 0.001], options={}, steps=50,
                        tolerance=None, history_every=1, bounds=None, dtype="float64")
