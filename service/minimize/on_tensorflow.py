"""A sweep on TensorFlow: ``tf.keras.optimizers`` stepping a ``tf.Variable``, one rate at a time.

Keras optimisers hold one learning rate each, so the rates run one after another -- but through
one optimiser and one pair of traced functions: between runs the position, the learning rate
and the optimiser's own variables are reset to their starting values, so nothing is traced
twice. Steps run in chunks inside one ``tf.function`` (a ``tf.while_loop`` that applies the
gradient, projects onto the bounds and evaluates the new point, and stops at once when the run
converges or diverges); between chunks Python records the history and checks the wall-time
deadline. What is recorded and when a run stops match :mod:`.on_jax`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service import backends
from service.compute import check_deadline
from service.minimize.optimizers import build_keras
from service.minimize.sweep import Objective, Plan, Run, assess

# Most steps one tf.function call takes: bounds the time between two deadline checks.
MAX_CHUNK = 1_000
traces = 0  # times the objective was traced: tests count, never time


class _Stepper:
    """One optimiser on one variable, with traced ``evaluate`` and ``advance`` functions."""

    def __init__(self, tf: Any, fn: Callable[..., Any], plan: Plan) -> None:
        dtype = getattr(tf, plan.dtype)
        self.tf, self.plan = tf, plan
        self.x = x = tf.Variable(plan.start, dtype=dtype)
        lower = tf.constant(plan.lower, dtype=dtype)
        upper = tf.constant(plan.upper, dtype=dtype)
        tolerance = tf.constant(-1.0 if plan.tolerance is None else plan.tolerance, dtype=dtype)
        # Keras would keep a float learning rate in a float32 variable (1e-3 → 1.0000000475e-3);
        # a callable rate (documented Keras API) reading our float64 variable keeps it exact.
        self.rate = rate = tf.Variable(0.0, dtype=dtype)
        self.optimizer = optimizer = build_keras(tf, plan.optimizer, lambda: rate.read_value(),
                                                 plan.hyper_parameters)
        optimizer.build([x])
        self.fresh_state = [v.numpy() for v in optimizer.variables]  # step count, moments, ...

        def evaluate():
            """Value, gradient and its norm at x, and whether the run diverged or converged."""
            global traces
            traces += 1  # Python runs this body only while TensorFlow traces it
            with tf.GradientTape() as tape:
                value = tf.cast(fn(*tf.unstack(x)), dtype)
            grad = tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grad_norm, diverged, converged = assess(tf.experimental.numpy, x, value, grad,
                                                    lower, upper, tolerance)
            return value, grad, grad_norm, diverged, converged

        def advance(steps, state):
            """Up to ``steps`` steps from ``state`` (as evaluate() returns it); stops on a stop."""
            def going(done, state):
                return (done < steps) & ~state[3] & ~state[4]

            def step(done, state):
                optimizer.apply_gradients([(state[1], x)])
                x.assign(tf.clip_by_value(x, lower, upper))  # projected step
                return done + 1, evaluate()

            return tf.while_loop(going, step, (tf.constant(0), state))

        self.evaluate = tf.function(evaluate)
        self.advance = tf.function(advance)

    def run(self, learning_rate: float) -> Run:
        plan, tf = self.plan, self.tf
        self.x.assign(plan.start)
        self.rate.assign(learning_rate)
        for variable, fresh in zip(self.optimizer.variables, self.fresh_state, strict=True):
            variable.assign(fresh)

        steps, xs, values, norms = [], [], [], []
        state = self.evaluate()
        taken = 0
        while True:
            value, _, grad_norm, diverged, converged = (t.numpy() for t in state)
            stopped = bool(diverged or converged)
            if taken % plan.history_every == 0 or stopped or taken == plan.steps:
                steps.append(taken)
                xs.append(self.x.numpy())
                values.append(value)
                norms.append(grad_norm)
            if stopped or taken == plan.steps:
                break
            check_deadline()
            chunk = min(MAX_CHUNK, plan.steps - taken, plan.history_every - taken % plan.history_every)
            done, state = self.advance(tf.constant(chunk), state)
            taken += int(done)
        return Run(
            learning_rate=learning_rate, x=xs[-1], value=float(values[-1]),
            grad_norm=float(norms[-1]), steps_taken=taken, converged=bool(converged),
            diverged=bool(diverged), history_step=np.array(steps),
            history_x=np.array(xs, dtype=plan.dtype).reshape(len(xs), -1),
            history_value=np.array(values, dtype=plan.dtype),
            history_grad_norm=np.array(norms, dtype=plan.dtype),
        )


def run_sweep(objective: Objective, plan: Plan) -> list[Run]:
    tf = backends.tensorflow()
    stepper = _Stepper(tf, objective.make("tensorflow", plan.dtype), plan)
    # optimisers without a learning rate are jax-only (optimizers.resolve refuses them here)
    return [stepper.run(float(rate)) for rate in plan.learning_rates if rate is not None]
