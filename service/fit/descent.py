"""Fitting a line by minibatch gradient descent, on JAX (optax) or TensorFlow (Keras ``fit``).

The loss of one minibatch is the mean of wᵢ·(yᵢ - m·xᵢ - q)² over its points (wᵢ = 1/σᵢ², or 1:
Keras' mean squared error with sample weights). Both backends walk the same batches: the
per-epoch permutations are drawn here with numpy from ``seed`` and handed to each backend, so
with the same options their histories agree. Not to the last bit: Keras holds its learning rate,
Adam's β and its loss tracker in float32, so with SGD the parameters agree only as far as the
learning rate survives float32 rounding (~1e-8 relative for 0.1, ~1e-10 in the seed's
experiment) and the reported losses to ~1e-7 (with Adam, ~1e-5). The data reach Keras as a float64 ``tf.data``
dataset: numpy arrays would be cast to float32.

``history.loss`` follows Keras: the epoch's minibatch losses averaged, weighted by batch size,
as the parameters move during the epoch. ``history.m``/``q`` are the values at each epoch's end.

With ``standardize`` the fit runs in x' = (x - x̄)/s with weights divided by their mean, and maps
m, q (the initial values, and the history) back, so one learning rate of order 0.1 suits any data;
its loss is then the weighted mean squared residual with weights of mean 1.

The covariance comes from the autodiff Hessian H of χ²(m, q) = Σ wᵢ rᵢ² at the end point:
cov = 2·H⁻¹ (χ² is -2 log L for Gaussian errors), scaled by the residual variance χ²/ndf when
no σ was given — the conventions of :mod:`labcrunch_service.fit.line`. The Hessian is taken in
standardized coordinates (well conditioned) and propagated to (m, q).

On JAX an epoch is compiled ``lax.scan`` calls over tables of at most ``CHUNK_BATCHES``
minibatch indices, each awaited before the progress report (which stops the fit past its
wall-time deadline) and the next. Data and tables are zero-padded to a few bucketed shapes
(:func:`~labcrunch_service.cache.bucket_size`) and the learning rate is optimizer state, so
requests of similar size and any learning rate reuse one compiled program (counted in
``cache.TRACES["fit.jax"]``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from labcrunch_service import backends
from labcrunch_service.cache import LruCache, bucket_size, counting_traces
from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.fit.line import (
    GRADIENT_DESCENT,
    DescentOptions,
    LineFit,
    LinePoints,
    Standardization,
    line_fit,
)
from labcrunch_service.progress import report

backends.configure()

OPTIMIZERS = ("sgd", "adam")
# Adam's ε, the same on both backends (Keras' default is 1e-7, optax's 1e-8).
ADAM_EPSILON = 1e-8
# Minibatches per compiled call (jax) or Keras `fit` call (tensorflow); progress is reported (and
# the deadline checked) between calls, so one long epoch of small batches cannot run far past the
# wall time.
CHUNK_BATCHES = 4096


def batch_orders(n: int, epochs: int, shuffle: bool, seed: int) -> Iterator[np.ndarray]:
    """The order in which each epoch visits the points: one numpy permutation per epoch."""
    rng = np.random.default_rng(seed)
    identity = np.arange(n)
    for _ in range(epochs):
        yield rng.permutation(n) if shuffle else identity


@dataclass(frozen=True)
class _Problem:
    """What a backend needs: standardized (or raw) x, y, weights, start point, batch orders."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    start: tuple[float, float]
    batch_size: int
    orders: Iterator[np.ndarray]
    options: DescentOptions


# A backend returns per-epoch arrays: loss, a, c (the line a·x + c in the coordinates it was given).
History = tuple[np.ndarray, np.ndarray, np.ndarray]


def _padded(values: np.ndarray, size: int) -> jax.Array:
    """Zero-padded to ``size``: padded points carry weight 0 (or are never indexed)."""
    return jnp.asarray(np.pad(values, (0, size - values.shape[0])), dtype=jnp.float64)


def batch_layout(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's minibatches as a padded index table and the number of real points in each.

    Row b holds the indices of batch b in ``order`` (the last batch may be shorter); the table is
    padded to bucketed shapes with index 0, and padded rows have count 0 (they change nothing).
    """
    n = order.shape[0]
    n_full, rest = divmod(n, batch_size)
    n_batches = n_full + (rest > 0)
    table = np.zeros((bucket_size(n_batches), bucket_size(batch_size)), dtype=np.int32)
    counts = np.zeros(table.shape[0], dtype=np.int32)
    table[:n_full, :batch_size] = order[:n_full * batch_size].reshape(n_full, batch_size)
    counts[:n_full] = batch_size
    if rest:
        table[n_full, :rest] = order[n_full * batch_size:]
        counts[n_full] = rest
    return table, counts


def _optax(optimizer: str) -> optax.GradientTransformation:
    """The optimizer with its learning rate as state, so one compile serves every rate."""
    if optimizer == "adam":
        return optax.inject_hyperparams(optax.adam)(learning_rate=0.0, eps=ADAM_EPSILON)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)


JaxBatches = tuple[optax.GradientTransformation, Callable]
_jax_programs: LruCache[JaxBatches] = LruCache(16, name="fit.jax", setting="compile_cache_size")


def _jax_batches(optimizer: str) -> JaxBatches:
    """The optimizer and its compiled minibatch steps (cached per optimizer)."""
    return _jax_programs.get_or_build(optimizer, lambda: _build_jax_batches(optimizer))


def _build_jax_batches(optimizer: str) -> JaxBatches:
    """Compiled minibatch steps: a scan over a batch table (rows with count 0 change nothing);
    returns the new parameters and state and Σ count·loss over the table's batches."""
    opt = _optax(optimizer)

    def step(carry, batch):
        params, state = carry
        x, y, w, count = batch

        def batch_loss(p):  # Keras' weighted MSE: mean over the batch's real points
            residual = y - (p[0] * x + p[1])
            return jnp.sum(w * residual * residual) / jnp.maximum(count, 1)

        loss, grads = jax.value_and_grad(batch_loss)(params)
        updates, new_state = opt.update(grads, state, params)
        real = count > 0
        params = jnp.where(real, optax.apply_updates(params, updates), params)
        state = jax.tree.map(lambda new, old: jnp.where(real, new, old), new_state, state)
        return (params, state), loss * count

    def run_batches(params, state, x, y, w, table, counts):
        mask = jnp.arange(table.shape[1])[None, :] < counts[:, None]
        batches = (x[table], y[table], jnp.where(mask, w[table], 0.0), counts)
        (params, state), weighted_losses = jax.lax.scan(step, (params, state), batches)
        return params, state, jnp.sum(weighted_losses)

    return opt, jax.jit(counting_traces("fit.jax", run_batches))


def _run_jax(problem: _Problem) -> History:
    opt, run_batches = _jax_batches(problem.options.optimizer)
    size = bucket_size(problem.x.shape[0])
    x, y, w = (_padded(a, size) for a in (problem.x, problem.y, problem.w))
    params = jnp.asarray(problem.start, dtype=jnp.float64)
    state = opt.init(params)
    learning_rate = jnp.asarray(problem.options.learning_rate, dtype=jnp.float64)
    state = state._replace(hyperparams={**state.hyperparams, "learning_rate": learning_rate})
    n = problem.x.shape[0]
    chunk = CHUNK_BATCHES * problem.batch_size
    losses, path = [], []
    for epoch, order in enumerate(problem.orders):
        epoch_loss = 0.0
        for start in range(0, n, chunk):
            report(epoch + start / n, problem.options.epochs, "epochs")
            table, counts = batch_layout(order[start:start + chunk], problem.batch_size)
            params, state, loss_sum = run_batches(params, state, x, y, w, table, counts)
            # Awaited here: JAX dispatches asynchronously, and a deadline check that runs ahead
            # of queued work would stop nothing.
            epoch_loss += float(loss_sum)
        losses.append(epoch_loss / n)  # Keras' average: minibatch losses weighted by batch size
        path.append(np.asarray(params, dtype=np.float64))
    path_np = np.asarray(path, dtype=np.float64)
    return np.asarray(losses, dtype=np.float64), path_np[:, 0], path_np[:, 1]


@functools.cache
def _keras_line_model(keras: Any) -> type:
    """The seed's model, y = m·x + q with two float64 variables (built once TF is loaded)."""

    class KerasLine(keras.Model):
        def __init__(self, a: float, c: float) -> None:
            super().__init__(dtype="float64")
            self.a = self.add_weight(shape=(), initializer=keras.initializers.Constant(a),
                                     dtype="float64", name="slope")
            self.c = self.add_weight(shape=(), initializer=keras.initializers.Constant(c),
                                     dtype="float64", name="intercept")

        def call(self, x):
            return self.a * x + self.c

    return KerasLine


def _run_tensorflow(problem: _Problem) -> History:
    tf = backends.tensorflow()
    keras = tf.keras
    options = problem.options
    model = _keras_line_model(keras)(*problem.start)
    optimizer = (keras.optimizers.Adam(options.learning_rate, epsilon=ADAM_EPSILON)
                 if options.optimizer == "adam" else keras.optimizers.SGD(options.learning_rate))
    # steps_per_execution: 32 minibatch steps per graph call instead of one (same arithmetic, ~5x
    # faster for small batches).
    model.compile(optimizer=optimizer, loss=keras.losses.MeanSquaredError(dtype="float64"),
                  steps_per_execution=32)
    x, y, w = problem.x[:, None], problem.y[:, None], problem.w
    n = x.shape[0]
    # At most CHUNK_BATCHES minibatches per `fit` call (~1 s at ~250 µs a step), the deadline
    # checked between calls. (A batch-end callback does the same but makes every step ~2x slower.)
    chunk = CHUNK_BATCHES * problem.batch_size
    losses, slopes, intercepts = [], [], []
    for epoch, order in enumerate(problem.orders):
        epoch_loss = 0.0
        for start in range(0, n, chunk):
            report(epoch + start / n, problem.options.epochs, "epochs")
            part = order[start:start + chunk]
            # Our order, so both backends see the same batches. A tf.data dataset, because Keras
            # casts float64 numpy inputs to float32 (its floatx) but keeps a dataset's dtype.
            batches = tf.data.Dataset.from_tensor_slices((x[part], y[part], w[part]))
            fitted = model.fit(batches.batch(problem.batch_size), epochs=1, shuffle=False, verbose=0)
            # Keras averages the minibatch losses weighted by batch size; so do the chunks.
            epoch_loss += fitted.history["loss"][0] * part.shape[0]
        losses.append(epoch_loss / n)
        slopes.append(float(model.a.numpy()))
        intercepts.append(float(model.c.numpy()))
    return (np.asarray(losses, dtype=np.float64), np.asarray(slopes, dtype=np.float64),
            np.asarray(intercepts, dtype=np.float64))


RUNNERS: dict[str, Callable[[_Problem], History]] = {"jax": _run_jax, "tensorflow": _run_tensorflow}


@jax.jit
def _chi_square_hessian(params: jax.Array, x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    def chi_square(p):
        residual = y - (p[0] * x + p[1])
        return jnp.sum(w * residual * residual)

    return jax.hessian(chi_square)(params)


def covariance_from_hessian(points: LinePoints, m: float, q: float) -> np.ndarray:
    """Unscaled covariance of (m, q): 2·H⁻¹ of χ² at (m, q), taken in standardized coordinates."""
    frame = Standardization.of(points)
    a, c = frame.from_line(m, q)
    size = bucket_size(points.n)  # padded points have weight 0
    hessian = _chi_square_hessian(jnp.asarray([a, c], dtype=jnp.float64),
                                  _padded(frame.apply(points.x), size), _padded(points.y, size),
                                  _padded(points.weights, size))
    try:
        cov_ac = 2.0 * np.linalg.inv(np.asarray(hessian, dtype=np.float64))
    except np.linalg.LinAlgError:  # only at a non-finite end point: the run diverged
        cov_ac = np.full((2, 2), np.nan)
    return frame.covariance_to_line(cov_ac)


def gradient_descent(points: LinePoints, options: DescentOptions, backend: str, *,
                     max_epochs: int, max_batches: int) -> LineFit:
    """Fit by minibatch gradient descent; 413 when epochs or minibatch steps are over the limits."""
    if options.optimizer not in OPTIMIZERS:
        raise InvalidInput(f"Unknown optimizer {options.optimizer!r}; one of {list(OPTIMIZERS)}.",
                           errors=[{"loc": ["body", "gradient_descent", "optimizer"], "msg": "unknown", "type": "enum"}])
    if backend not in RUNNERS:
        raise InvalidInput(f"Unknown backend {backend!r}; one of {list(RUNNERS)}.",
                           errors=[{"loc": ["body", "backend"], "msg": "unknown", "type": "enum"}])
    if options.epochs > max_epochs:
        raise LimitExceeded(f"{options.epochs} epochs asked; at most {max_epochs} "
                            "(limits.max_fit_epochs).", limit="max_fit_epochs", maximum=max_epochs,
                            value=options.epochs)
    batch_size = min(options.batch_size, points.n)
    steps = options.epochs * math.ceil(points.n / batch_size)
    if steps > max_batches:
        raise LimitExceeded(f"{options.epochs} epochs of {math.ceil(points.n / batch_size)} minibatches "
                            f"are {steps} steps; at most {max_batches} (limits.max_fit_batches): use "
                            "larger batches or fewer epochs.", limit="max_fit_batches",
                            maximum=max_batches, value=steps)
    frame = Standardization.of(points) if options.standardize else Standardization(0.0, 1.0)
    # Standardized, the weights are scaled to mean 1 too: the full-data loss then has the Hessian
    # 2·I in (a, c) whatever the units of x and σ, so a learning rate ~0.1 converges everywhere.
    weights = points.weights / points.weights.mean() if options.standardize else points.weights
    problem = _Problem(
        x=frame.apply(points.x), y=points.y, w=weights,
        start=frame.from_line(options.initial_m, options.initial_q), batch_size=batch_size,
        orders=batch_orders(points.n, options.epochs, options.shuffle, options.seed), options=options,
    )
    with np.errstate(all="ignore"):  # a diverging run is reported as such, not as warnings
        loss, a, c = RUNNERS[backend](problem)
        m_path, q_path = frame.to_line(a, c)
        m, q = float(m_path[-1]), float(q_path[-1])
        covariance = covariance_from_hessian(points, m, q)
    history = {"loss": loss, "m": m_path, "q": q_path}
    return line_fit(points, m, q, covariance, method=GRADIENT_DESCENT, backend=backend, history=history)
