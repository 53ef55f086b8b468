"""A sweep on TensorFlow: ``tf.keras.optimizers`` stepping a ``tf.Variable``, one rate at a time.

Keras optimizers hold one learning rate each, so the rates run one after another -- through one
:class:`Stepper`: one optimizer and one pair of traced functions, kept in a small LRU cache per
(function, dtype, optimizer, hyper-parameters). Before each run the position, learning rate,
bounds, tolerance and the optimizer's own variables are reset, so a new rate, start point or
request traces nothing. Steps run in chunks inside one ``tf.function`` (a ``tf.while_loop`` that
applies the gradient, projects onto the bounds, evaluates and records the new point, and stops
at once when the run converges or diverges); between chunks Python keeps every
``history_every``-th entry and reports its progress (which stops it past the wall-time deadline). What is recorded and when a run
stops match :mod:`.on_jax`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from labcrunch_service import backends
from labcrunch_service.cache import LruCache, counting_traces
from labcrunch_service.minimize.optimizers import build_keras
from labcrunch_service.minimize.stopping import assess
from labcrunch_service.minimize.types import Objective, Plan, Run
from labcrunch_service.progress import report

# Most steps one tf.function call takes: bounds the time between two deadline checks.
MAX_CHUNK = 1_000
# Tests count traces of the objective in cache.TRACES["minimize.tensorflow"], never with a clock.
_steppers: LruCache[Stepper] = LruCache(16, name="minimize.tensorflow", setting="compile_cache_size")


class Stepper:
    """One optimizer on one position variable, with traced ``evaluate`` and ``advance``.

    Not for two sweeps at once: :func:`run_sweep` holds ``lock`` while it uses one.
    """

    def __init__(self, tf: Any, fn: Callable[..., Any], n_variables: int, dtype_name: str,
                 optimizer_name: str, hyper_parameters: dict[str, Any]) -> None:
        dtype = getattr(tf, dtype_name)
        self.tf, self.lock = tf, threading.Lock()
        self.x = x = tf.Variable(tf.zeros([n_variables], dtype=dtype))
        self.lower = lower = tf.Variable(tf.zeros([n_variables], dtype=dtype))
        self.upper = upper = tf.Variable(tf.zeros([n_variables], dtype=dtype))
        self.tolerance = tolerance = tf.Variable(tf.zeros([], dtype=dtype))
        # Keras would keep a float learning rate in a float32 variable (1e-3 → 1.0000000475e-3);
        # a callable rate (documented Keras API) reading our own variable keeps it exact.
        self.rate = rate = tf.Variable(tf.zeros([], dtype=dtype))
        self.optimizer = optimizer = build_keras(tf, optimizer_name, lambda: rate.read_value(),
                                                 hyper_parameters)
        optimizer.build([x])
        self.fresh_state = [v.numpy() for v in optimizer.variables]  # step count, moments, ...

        @functools.partial(counting_traces, "minimize.tensorflow")
        def evaluate():
            """Value, gradient and its norm at x, and whether the run diverged or converged."""
            with tf.GradientTape() as tape:
                value = tf.cast(fn(*tf.unstack(x)), dtype)
            grad = tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grad_norm, diverged, converged = assess(tf.experimental.numpy, x, value, grad,
                                                    lower, upper, tolerance)
            return value, grad, grad_norm, diverged, converged

        def advance(steps, state):
            """Up to ``steps`` steps from ``state`` (as evaluate() returns it), each recorded;
            stops after a step that converged or diverged."""
            def going(done, state, *_):
                return (done < steps) & ~state[3] & ~state[4]

            def step(done, state, xs, values, norms):
                optimizer.apply_gradients([(state[1], x)])
                x.assign(tf.clip_by_value(x, lower, upper))  # projected step
                state = evaluate()
                return (done + 1, state, xs.write(done, x.read_value()),
                        values.write(done, state[0]), norms.write(done, state[2]))

            records = [tf.TensorArray(dtype, size=0, dynamic_size=True) for _ in range(3)]
            done, state, *records = tf.while_loop(going, step, (tf.constant(0), state, *records))
            return done, state, *(r.stack() for r in records)

        self.evaluate = tf.function(evaluate)
        self.advance = tf.function(advance)

    def run(self, plan: Plan, learning_rate: float, steps_before: int = 0) -> Run:
        """One run; progress counts ``steps_before`` (earlier runs' steps) plus this run's."""
        self.x.assign(plan.start)
        self.lower.assign(plan.lower)
        self.upper.assign(plan.upper)
        self.tolerance.assign(-1.0 if plan.tolerance is None else plan.tolerance)
        self.rate.assign(learning_rate)
        for variable, fresh in zip(self.optimizer.variables, self.fresh_state, strict=True):
            variable.assign(fresh)

        state = self.evaluate()
        steps, xs, values, norms = [0], [plan.start], [state[0].numpy()], [state[2].numpy()]
        taken = 0
        stopped = bool(state[3] | state[4])
        while not stopped and taken < plan.steps:
            report(steps_before + taken, plan.steps * len(plan.learning_rates), "steps")
            chunk = min(MAX_CHUNK, plan.steps - taken)
            done, state, chunk_x, chunk_value, chunk_norm = self.advance(self.tf.constant(chunk), state)
            at = taken + 1 + np.arange(int(done))  # the step number of each recorded entry
            keep = at % plan.history_every == 0
            steps += at[keep].tolist()
            xs += list(chunk_x.numpy()[keep])
            values += chunk_value.numpy()[keep].tolist()
            norms += chunk_norm.numpy()[keep].tolist()
            taken += int(done)
            stopped = bool(state[3] | state[4])
        value, grad_norm = state[0].numpy(), state[2].numpy()
        if steps[-1] != taken:  # stopped (or ended) between two records: add the last step
            steps.append(taken)
            xs.append(self.x.numpy())
            values.append(value)
            norms.append(grad_norm)
        return Run(
            learning_rate=learning_rate, x=np.asarray(xs[-1]), value=float(value),
            grad_norm=float(grad_norm), steps_taken=taken, converged=bool(state[4]),
            diverged=bool(state[3]), history_step=np.array(steps),
            history_x=np.array(xs, dtype=plan.dtype).reshape(len(xs), -1),
            history_value=np.array(values, dtype=plan.dtype),
            history_grad_norm=np.array(norms, dtype=plan.dtype),
        )


def _stepper(objective: Objective, plan: Plan) -> Stepper:
    """The stepper for this function, dtype and optimizer (cached, LRU)."""
    key = (objective.key, plan.dtype, plan.optimizer, tuple(sorted(plan.hyper_parameters.items())))
    return _steppers.get_or_build(key, lambda: Stepper(
        backends.tensorflow(), objective.make("tensorflow", plan.dtype), len(objective.variables),
        plan.dtype, plan.optimizer, plan.hyper_parameters))


def run_sweep(objective: Objective, plan: Plan) -> list[Run]:
    stepper = _stepper(objective, plan)
    with stepper.lock:
        # optimizers without a learning rate are jax-only (optimizers.resolve refuses them here)
        return [stepper.run(plan, float(rate), i * plan.steps)
                for i, rate in enumerate(plan.learning_rates) if rate is not None]
