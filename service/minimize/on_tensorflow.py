"""A sweep on TensorFlow: ``tf.keras.optimizers`` stepping a ``tf.Variable``, one rate at a time.

Keras optimisers hold one learning rate each, so the rates run one after another. Each step is
a ``tf.function`` (apply the gradient, project onto the bounds, evaluate value and gradient at
the new point); the loop around it stays in Python so that it can stop a run at once and check
the wall-time deadline. The semantics (what is recorded, when a run stops) match :mod:`.on_jax`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service import backends
from service.compute import check_deadline
from service.minimize.optimizers import build_keras
from service.minimize.sweep import Objective, Plan, Run


def _one_run(tf: Any, fn: Callable[..., Any], plan: Plan, learning_rate: float) -> Run:
    dtype = getattr(tf, plan.dtype)
    x = tf.Variable(plan.start, dtype=dtype)
    lower = tf.constant(plan.lower, dtype=dtype)
    upper = tf.constant(plan.upper, dtype=dtype)
    # Keras would keep a float learning rate in a float32 variable (1e-3 → 1.0000000475e-3);
    # a callable rate (documented Keras API) keeps it exact in float64.
    rate = tf.constant(learning_rate, dtype=dtype)
    optimizer = build_keras(tf, plan.optimizer, lambda: rate, plan.hyper_parameters)

    def evaluate():
        with tf.GradientTape() as tape:
            value = tf.cast(fn(*tf.unstack(x)), dtype)
        grad = tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        # ‖g‖ = s·‖g/s‖ with s = max|g|: no overflow while every component is finite
        scale = tf.reduce_max(tf.abs(grad))
        safe = tf.where(scale > 0, scale, tf.ones_like(scale))
        return value, grad, scale * tf.sqrt(tf.reduce_sum(tf.square(grad / safe)))

    @tf.function
    def step(grad):
        optimizer.apply_gradients([(grad, x)])
        x.assign(tf.clip_by_value(x, lower, upper))  # projected step
        return evaluate()

    tolerance = -1.0 if plan.tolerance is None else plan.tolerance
    steps, xs, values, norms = [], [], [], []
    value, grad, grad_norm = tf.function(evaluate)()
    taken = 0
    while True:
        position, value_, grad_, norm_ = x.numpy(), float(value), grad.numpy(), float(grad_norm)
        diverged = not (np.isfinite(value_) and np.isfinite(grad_).all() and np.isfinite(position).all())
        converged = not diverged and norm_ <= tolerance
        last = diverged or converged or taken == plan.steps
        if taken % plan.history_every == 0 or last:
            steps.append(taken)
            xs.append(position)
            values.append(value_)
            norms.append(norm_)
        if last:
            break
        check_deadline()
        value, grad, grad_norm = step(grad)
        taken += 1
    return Run(
        learning_rate=learning_rate, x=position, value=value_, grad_norm=norm_, steps_taken=taken,
        converged=converged, diverged=diverged, history_step=np.array(steps),
        history_x=np.array(xs, dtype=plan.dtype).reshape(len(xs), -1),
        history_value=np.array(values, dtype=plan.dtype),
        history_grad_norm=np.array(norms, dtype=plan.dtype),
    )


def run_sweep(objective: Objective, plan: Plan) -> list[Run]:
    tf = backends.tensorflow()
    fn = objective.make("tensorflow", plan.dtype)
    runs = []
    for learning_rate in plan.learning_rates:
        assert learning_rate is not None  # optimisers without a rate are jax-only (resolve())
        runs.append(_one_run(tf, fn, plan, learning_rate))
    return runs
