"""A sweep on JAX: one compiled program for all learning rates (vmap) and all steps (scan).

Each run carries its position, optimiser state, value and gradient. A stopped run (converged
or diverged) keeps being computed alongside the others, as batched programs must, but
``jnp.where`` keeps its state frozen, so its record ends where it stopped. The history is
recorded every ``history_every`` steps by an outer ``lax.scan`` over inner ``fori_loop``s;
the host then cuts each run's history at its last step and appends that step if it fell
between records.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from service import backends
from service.minimize.optimizers import build_optax
from service.minimize.sweep import Objective, Plan, Run, assess

backends.configure()

_PROGRAM_CACHE_SIZE = 32
_programs: OrderedDict[tuple, Callable[..., Any]] = OrderedDict()
_programs_lock = threading.Lock()
traces = 0  # times a sweep program was traced (so compiled): tests count, never time


class RunState(NamedTuple):
    x: jax.Array  # (n_variables,)
    opt_state: Any
    value: jax.Array
    grad: jax.Array
    grad_norm: jax.Array
    steps_taken: jax.Array  # int32
    converged: jax.Array  # bool
    diverged: jax.Array  # bool


def _build_program(loss: Callable[[jax.Array], jax.Array], optimizer: str,
                   hyper_parameters: dict[str, Any], steps: int, every: int):
    """jit(vmap over rates) of one run: rates (R,), start, tolerance, lower, upper → records."""
    value_and_grad = jax.value_and_grad(loss)

    def one_run(learning_rate, start, tolerance, lower, upper):
        global traces
        traces += 1  # Python runs this body only while jax traces it
        dtype = start.dtype
        opt = build_optax(optimizer, learning_rate, hyper_parameters)

        def evaluate(x, opt_state, steps_taken):
            value, grad = value_and_grad(x)
            value, grad = value.astype(dtype), grad.astype(dtype)  # constants must not promote
            grad_norm, diverged, converged = assess(jnp, x, value, grad, lower, upper, tolerance)
            return RunState(x, opt_state, value, grad, grad_norm, steps_taken, converged, diverged)

        def step(_, run: RunState) -> RunState:
            if optimizer == "lbfgs":  # the line search needs the value and the function itself
                extra = {"value": run.value, "grad": run.grad, "value_fn": loss}
            else:
                extra = {}
            updates, opt_state = opt.update(run.grad, run.opt_state, run.x, **extra)
            x = jnp.clip(run.x + updates.astype(dtype), lower, upper)  # projected step
            moved = evaluate(x, opt_state, run.steps_taken + 1)
            stopped = run.converged | run.diverged
            return jax.tree.map(lambda old, new: jnp.where(stopped, old, new), run, moved)

        def record(run: RunState):
            return run.x, run.value, run.grad_norm

        def advance(run: RunState, _):
            run = jax.lax.fori_loop(0, every, step, run)
            return run, record(run)

        run = evaluate(start, opt.init(start), jnp.zeros([], jnp.int32))
        first = record(run)
        run, records = jax.lax.scan(advance, run, length=steps // every)
        run = jax.lax.fori_loop(0, steps % every, step, run)
        history = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, records)
        return run._replace(opt_state=None, grad=None), history

    return jax.jit(jax.vmap(one_run, in_axes=(0, None, None, None, None)))


def _program(objective: Objective, plan: Plan):
    """The compiled program for this function, optimiser and step plan (cached, LRU)."""
    key = (objective.key, plan.dtype, plan.optimizer, tuple(sorted(plan.hyper_parameters.items())),
           plan.steps, plan.history_every)
    with _programs_lock:
        program = _programs.get(key)
        if program is not None:
            _programs.move_to_end(key)
            return program
    fn = objective.make("jax", plan.dtype)

    def loss(x: jax.Array) -> jax.Array:
        return fn(*(x[i] for i in range(x.shape[0])))

    program = _build_program(loss, plan.optimizer, plan.hyper_parameters, plan.steps,
                             plan.history_every)
    with _programs_lock:
        _programs[key] = program
        while len(_programs) > _PROGRAM_CACHE_SIZE:
            _programs.popitem(last=False)
    return program


def run_sweep(objective: Objective, plan: Plan) -> list[Run]:
    dtype = np.dtype(plan.dtype)
    rates = np.array([0.0 if r is None else r for r in plan.learning_rates], dtype=dtype)
    tolerance = np.asarray(-1.0 if plan.tolerance is None else plan.tolerance, dtype=dtype)
    final, history = _program(objective, plan)(
        jnp.asarray(rates), jnp.asarray(plan.start), jnp.asarray(tolerance),
        jnp.asarray(plan.lower), jnp.asarray(plan.upper))
    final, history = jax.device_get((final, history))
    record_steps = np.arange(history[1].shape[1]) * plan.history_every

    runs = []
    for r, rate in enumerate(plan.learning_rates):
        taken = int(final.steps_taken[r])
        keep = record_steps <= taken
        steps = record_steps[keep]
        hx, hvalue, hnorm = (h[r][keep] for h in history)
        if steps[-1] != taken:  # stopped (or ended) between two records: add the last step
            steps = np.append(steps, taken)
            hx = np.vstack([hx, final.x[r][None]])
            hvalue = np.append(hvalue, final.value[r])
            hnorm = np.append(hnorm, final.grad_norm[r])
        runs.append(Run(
            learning_rate=rate, x=final.x[r], value=float(final.value[r]),
            grad_norm=float(final.grad_norm[r]), steps_taken=taken,
            converged=bool(final.converged[r]), diverged=bool(final.diverged[r]),
            history_step=steps, history_x=hx, history_value=hvalue, history_grad_norm=hnorm,
        ))
    return runs
