"""A sweep on JAX: one compiled program for all learning rates (vmap), called in chunks of steps.

Each run carries its position, optimizer state, value and gradient. A stopped run (converged
or diverged) keeps being computed alongside the others, as batched programs must, but
``jnp.where`` keeps its state frozen, so its record ends where it stopped. ``begin`` evaluates
the start point; ``advance`` takes ``n`` records of ``gap`` steps each (both run-time numbers,
so one compiled program serves every ``steps`` and ``history_every``). The host calls
``advance`` for at most ``CHUNK_STEPS`` steps at a time and reports its progress between calls,
which stops the sweep past its wall-time deadline (one call for all 100,000 steps of an
expensive function could run for hours after its client had its 503); it stops once every run
has stopped, then cuts each run's history at its last step and appends that step if it fell
between records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from labcrunch_service import backends
from labcrunch_service.cache import LruCache, counting_traces
from labcrunch_service.minimize.optimizers import build_optax
from labcrunch_service.minimize.stopping import assess
from labcrunch_service.minimize.types import Objective, Plan, Run
from labcrunch_service.progress import report

backends.configure()

CHUNK_STEPS = 1_000  # most steps one compiled call takes: bounds the time between deadline checks
CHUNK_RECORDS = 100  # most history entries one call returns (its record buffer)
# Tests count traces (so compiles) in cache.TRACES["minimize.jax"], never with a clock.
_programs: LruCache[Program] = LruCache(32, name="minimize.jax", setting="compile_cache_size")


class RunState(NamedTuple):
    x: jax.Array  # (n_variables,)
    opt_state: Any
    value: jax.Array
    grad: jax.Array
    grad_norm: jax.Array
    steps_taken: jax.Array  # int32
    converged: jax.Array  # bool
    diverged: jax.Array  # bool


class Program(NamedTuple):
    """``begin(rates, start, tolerance, lower, upper)`` → (runs, first record);
    ``advance(rates, runs, tolerance, lower, upper, n, gap)`` → (runs, records buffer)."""

    begin: Callable[..., Any]
    advance: Callable[..., Any]


def _build_program(loss: Callable[[jax.Array], jax.Array], optimizer: str,
                   hyper_parameters: dict[str, Any]) -> Program:
    """jit(vmap over rates) of the start and of the stepping of one run."""
    value_and_grad = jax.value_and_grad(loss)

    def evaluate(x, opt_state, steps_taken, tolerance, lower, upper):
        value, grad = value_and_grad(x)
        value, grad = value.astype(x.dtype), grad.astype(x.dtype)  # constants must not promote
        grad_norm, diverged, converged = assess(jnp, x, value, grad, lower, upper, tolerance)
        return RunState(x, opt_state, value, grad, grad_norm, steps_taken, converged, diverged)

    def record(run: RunState):
        return run.x, run.value, run.grad_norm

    def begin(learning_rate, start, tolerance, lower, upper):
        opt = build_optax(optimizer, learning_rate, hyper_parameters)
        run = evaluate(start, opt.init(start), jnp.zeros([], jnp.int32), tolerance, lower, upper)
        return run, record(run)

    def advance(learning_rate, run: RunState, tolerance, lower, upper, n, gap):
        opt = build_optax(optimizer, learning_rate, hyper_parameters)

        def step(_, run: RunState) -> RunState:
            if optimizer == "lbfgs":  # the line search needs the value and the function itself
                extra = {"value": run.value, "grad": run.grad, "value_fn": loss}
            else:
                extra = {}
            updates, opt_state = opt.update(run.grad, run.opt_state, run.x, **extra)
            x = jnp.clip(run.x + updates.astype(run.x.dtype), lower, upper)  # projected step
            moved = evaluate(x, opt_state, run.steps_taken + 1, tolerance, lower, upper)
            stopped = run.converged | run.diverged
            return jax.tree.map(lambda old, new: jnp.where(stopped, old, new), run, moved)

        def one_record(i, carry):
            run, records = carry
            run = jax.lax.fori_loop(0, gap, step, run)
            records = jax.tree.map(lambda buf, r: buf.at[i].set(r), records, record(run))
            return run, records

        buffers = jax.tree.map(lambda r: jnp.zeros((CHUNK_RECORDS, *r.shape), r.dtype), record(run))
        return jax.lax.fori_loop(0, n, one_record, (run, buffers))

    begin, advance = (counting_traces("minimize.jax", f) for f in (begin, advance))
    return Program(jax.jit(jax.vmap(begin, in_axes=(0, None, None, None, None))),
                   jax.jit(jax.vmap(advance, in_axes=(0, 0, None, None, None, None, None))))


def _program(objective: Objective, plan: Plan) -> Program:
    """The compiled program for this function, dtype and optimizer (cached, LRU)."""
    key = (objective.key, plan.dtype, plan.optimizer, tuple(sorted(plan.hyper_parameters.items())))

    def build() -> Program:
        fn = objective.make("jax", plan.dtype)

        def loss(x: jax.Array) -> jax.Array:
            return fn(*(x[i] for i in range(x.shape[0])))

        return _build_program(loss, plan.optimizer, plan.hyper_parameters)

    return _programs.get_or_build(key, build)


def _calls(steps: int, every: int):
    """``(n, gap, recorded)`` per ``advance`` call: at most CHUNK_STEPS steps and CHUNK_RECORDS
    records each; ``recorded`` when its n records fall on multiples of ``every``."""
    done = 0
    while done < steps:
        to_record = every - done % every  # steps to the next multiple of `every`
        if to_record > steps - done:  # the tail after the last record
            gap = min(steps - done, CHUNK_STEPS)
            yield 1, gap, False
            done += gap
        elif to_record < every or every > CHUNK_STEPS:  # a long gap, split
            gap = min(to_record, CHUNK_STEPS)
            yield 1, gap, gap == to_record
            done += gap
        else:
            n = min(CHUNK_RECORDS, CHUNK_STEPS // every, (steps - done) // every)
            yield n, every, True
            done += n * every


def run_sweep(objective: Objective, plan: Plan) -> list[Run]:
    dtype = np.dtype(plan.dtype)
    program = _program(objective, plan)
    rates = jnp.asarray(np.array([0.0 if r is None else r for r in plan.learning_rates], dtype=dtype))
    fixed = (jnp.asarray(np.asarray(-1.0 if plan.tolerance is None else plan.tolerance, dtype=dtype)),
             jnp.asarray(plan.lower), jnp.asarray(plan.upper))
    state, first = program.begin(rates, jnp.asarray(plan.start), *fixed)
    record_steps, records = [0], [tuple(a[:, None] for a in jax.device_get(first))]
    done = 0
    for n, gap, recorded in _calls(plan.steps, plan.history_every):
        if bool(np.all(jax.device_get(state.converged | state.diverged))):
            break  # every run has stopped
        report(done, plan.steps, "steps")
        state, buffers = program.advance(rates, state, *fixed, np.int32(n), np.int32(gap))
        buffers = jax.device_get(buffers)  # waits for the call: the deadline checks real time
        if recorded:
            record_steps += [done + gap * (i + 1) for i in range(n)]
            records.append(tuple(b[:, :n] for b in buffers))
        done += n * gap
    final = jax.device_get(state)
    # (rates, entries, ...) for x, value and grad_norm
    history_x, history_value, history_norm = (
        np.concatenate(column, axis=1) for column in zip(*records, strict=True))
    record_steps = np.array(record_steps)

    runs = []
    for r, rate in enumerate(plan.learning_rates):
        taken = int(final.steps_taken[r])
        keep = record_steps <= taken
        steps = record_steps[keep]
        hx, hvalue, hnorm = history_x[r][keep], history_value[r][keep], history_norm[r][keep]
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
