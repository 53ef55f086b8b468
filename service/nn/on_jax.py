"""A dense network on JAX: the forward pass, its Jacobian, Keras' losses and metrics, and
minibatch training with the optax optimizers of /v1/minimize.

The weights travel as one flat vector (``jax.flatten_util.ravel_pytree``), so the optimizers of
:mod:`labcrunch_service.minimize.optimizers` (written for one parameter array) step them
unchanged; their updates are elementwise, so this equals Keras stepping each variable. Training
compiles ``lax.scan`` over a table of minibatch indices (:func:`~labcrunch_service.fit.descent.batch_layout`:
the rows of each batch, zero-padded to bucketed shapes, padded batches change nothing) with the
learning rate as an argument, so one compiled program serves every rate and nearby data sizes.
Compiled programs are cached per architecture, dtype, loss and optimizer and counted in
``cache.TRACES["nn.jax"]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from labcrunch_service import backends
from labcrunch_service.cache import LruCache, bucket_size, counting_traces
from labcrunch_service.fit.descent import batch_layout
from labcrunch_service.language.ops import backend_ops
from labcrunch_service.minimize.optimizers import build_optax
from labcrunch_service.nn.architecture import Architecture, LayerWeights
from labcrunch_service.nn.data import SPARSE
from labcrunch_service.nn.training import EPSILON, Objective, Optimization, Sums

backends.configure()

_programs: LruCache[Any] = LruCache(32, name="nn.jax", setting="compile_cache_size")
#: Fewer rows are padded to this many: small batches share one compiled shape.
MIN_ROWS = 8


def _padded_rows(values: np.ndarray, dtype: str) -> np.ndarray:
    """Rows zero-padded to a bucketed count, at least MIN_ROWS (padded rows are masked, sliced
    off, or never indexed)."""
    padded = np.zeros((bucket_size(max(values.shape[0], MIN_ROWS)), values.shape[1]), dtype=dtype)
    padded[:values.shape[0]] = values
    return padded


def activation(name: str, dtype: str) -> Callable[[jax.Array], jax.Array]:
    """The layer activation ``name``: the language's function, or linear, or softmax over the
    layer's units (the last axis)."""
    if name == "linear":
        return lambda z: z
    if name == "softmax":
        return functools.partial(jax.nn.softmax, axis=-1)
    return backend_ops("jax", dtype).functions[name]


def _forward(architecture: Architecture, dtype: str) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """``(weights, x) → (z, outputs)``: the last layer's pre-activation and the network's output."""
    activations = [activation(layer.activation, dtype) for layer in architecture.layers]

    def forward(weights: list[tuple[jax.Array, jax.Array | None]], x: jax.Array):
        h = z = x
        for (kernel, bias), act in zip(weights, activations, strict=True):
            z = jnp.matmul(h, kernel, precision=jax.lax.Precision.HIGHEST)
            if bias is not None:
                z = z + bias
            h = act(z)
        return z, h

    return forward


def _device_weights(weights: list[LayerWeights], dtype: str) -> list[tuple[jax.Array, jax.Array | None]]:
    return [(jnp.asarray(k, dtype=dtype), None if b is None else jnp.asarray(b, dtype=dtype))
            for k, b in weights]


def _host_weights(weights: list[tuple[jax.Array, jax.Array | None]]) -> list[LayerWeights]:
    return [(np.asarray(k), None if b is None else np.asarray(b)) for k, b in jax.device_get(weights)]


# --- predict ----------------------------------------------------------------------------------

def _build_predict(architecture: Architecture, dtype: str, jacobian: bool) -> Callable[..., Any]:
    forward = _forward(architecture, dtype)

    def outputs(weights, x):
        return forward(weights, x)[1]

    if not jacobian:
        return jax.jit(counting_traces("nn.jax", outputs))

    def one(weights, row):  # one sample's outputs, for its Jacobian
        return outputs(weights, row[None, :])[0]

    # Forward mode costs a pass per input, reverse mode one per output: take the fewer.
    differentiate = jax.jacfwd if architecture.inputs <= architecture.outputs else jax.jacrev

    def both(weights, x):
        return outputs(weights, x), jax.vmap(differentiate(one, argnums=1), in_axes=(None, 0))(weights, x)

    return jax.jit(counting_traces("nn.jax", both))


def predict(architecture: Architecture, weights: list[LayerWeights], x: np.ndarray, *,
            jacobian: bool, dtype: str, chunks: Iterator[slice]) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs (rows, outputs) and, with ``jacobian``, (rows, outputs, inputs), computed over
    ``chunks`` of rows (each padded to a bucketed size)."""
    program = _programs.get_or_build(("predict", architecture, dtype, jacobian),
                                     lambda: _build_predict(architecture, dtype, jacobian))
    device_weights = _device_weights(weights, dtype)
    outputs, jacobians = [], []
    for rows in chunks:
        part = x[rows]
        answer = jax.device_get(program(device_weights, jnp.asarray(_padded_rows(part, dtype))))
        if jacobian:
            outputs.append(answer[0][:part.shape[0]])
            jacobians.append(answer[1][:part.shape[0]])
        else:
            outputs.append(answer[:part.shape[0]])
    empty = np.zeros((0, architecture.outputs), dtype=dtype)
    out = np.concatenate(outputs) if outputs else empty
    if not jacobian:
        return out, None
    return out, (np.concatenate(jacobians) if jacobians else
                 np.zeros((0, architecture.outputs, architecture.inputs), dtype=dtype))


# --- losses and metrics, per sample (Keras' definitions) ----------------------------------------

def _clip(p: jax.Array) -> jax.Array:
    return jnp.clip(p, EPSILON, 1.0 - EPSILON)


def _labels(y: jax.Array) -> jax.Array:
    return y[:, 0].astype(jnp.int32)


def sample_loss(objective: Objective) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(y, prediction) → loss per sample``, ``prediction`` being what the loss reads (the output
    or, see :class:`~labcrunch_service.nn.training.Objective`, the output layer's
    pre-activation). As Keras: means over the output units for mse, mae and binary
    cross-entropy; sums for the categorical ones; probabilities clipped to [ε, 1 − ε]."""
    loss, logits = objective.loss, objective.logits
    if loss == "mse":
        return lambda y, p: jnp.mean(jnp.square(y - p), axis=-1)
    if loss == "mae":
        return lambda y, p: jnp.mean(jnp.abs(y - p), axis=-1)
    if loss == "binary_crossentropy":
        if logits:  # tf.nn.sigmoid_cross_entropy_with_logits
            return lambda y, z: jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))),
                                         axis=-1)
        return lambda y, p: jnp.mean(-(y * jnp.log(_clip(p)) + (1 - y) * jnp.log(1 - _clip(p))),
                                     axis=-1)
    if loss == "categorical_crossentropy":
        if logits:
            return lambda y, z: -jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=-1)
        return lambda y, p: -jnp.sum(y * jnp.log(_clip(p / jnp.sum(p, axis=-1, keepdims=True))),
                                     axis=-1)
    assert loss == SPARSE, loss

    def sparse(y, z):  # probabilities: their clipped logarithms are the logits, as in Keras
        z = z if logits else jnp.log(_clip(z))
        return -jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), _labels(y)[:, None], axis=-1)[:, 0]

    return sparse


def sample_metrics(objective: Objective) -> Callable[..., dict[str, jax.Array]]:
    """``(y, read, outputs) → {name: value per sample}``: ``read`` is what the loss reads,
    ``outputs`` the network's output."""
    def binary_accuracy(y, read, out):
        predicted = read > 0 if objective.logits else out > 0.5
        return jnp.mean((predicted == (y > 0.5)).astype(out.dtype), axis=-1)

    kinds: dict[str, Callable[..., jax.Array]] = {
        "binary_accuracy": binary_accuracy,
        "categorical_accuracy": lambda y, read, out: (
            jnp.argmax(out, axis=-1) == jnp.argmax(y, axis=-1)).astype(out.dtype),
        "sparse_accuracy": lambda y, read, out: (
            jnp.argmax(out, axis=-1) == _labels(y)).astype(out.dtype),
        "mse": lambda y, read, out: jnp.mean(jnp.square(y - out), axis=-1),
        "mae": lambda y, read, out: jnp.mean(jnp.abs(y - out), axis=-1),
    }

    def metrics(y, read, out):
        return {name: kinds[kind](y, read, out) for name, kind in objective.metrics}

    return metrics


# --- training ---------------------------------------------------------------------------------

class TrainingProgram(NamedTuple):
    unravel: Callable[[jax.Array], Any]
    init: Callable[[jax.Array], Any]  # flat weights → optimizer state
    run_batches: Callable[..., Any]  # (flat, state, rate, x, y, table, counts) → (flat, state, sums)
    evaluate: Callable[..., Any]  # (flat, x, y, count) → sums over the first `count` rows


def _build_training(architecture: Architecture, dtype: str, objective: Objective,
                    optimization: Optimization) -> TrainingProgram:
    forward = _forward(architecture, dtype)
    template = [(jnp.zeros((fan_in, layer.units), dtype),
                 jnp.zeros(layer.units, dtype) if layer.use_bias else None)
                for fan_in, layer in zip(architecture.fan_ins, architecture.layers, strict=True)]
    _, unravel = ravel_pytree(template)
    loss_of, metrics_of = sample_loss(objective), sample_metrics(objective)
    hyper_parameters = dict(optimization.hyper_parameters)

    def per_sample(flat, x, y):
        z, out = forward(unravel(flat), x)
        read = z if objective.pre_activation else out
        return loss_of(y, read), metrics_of(y, read, out)

    def masked_sums(losses, metrics, mask):
        return (jnp.sum(jnp.where(mask, losses, 0.0)),
                {k: jnp.sum(jnp.where(mask, v, 0.0)) for k, v in metrics.items()})

    def optimizer(rate):
        return build_optax(optimization.optimizer, rate, hyper_parameters)

    def run_batches(flat, state, rate, x, y, table, counts):
        opt = optimizer(rate)

        def step(carry, batch):
            flat, state = carry
            rows, count = batch
            mask = jnp.arange(rows.shape[0]) < count
            xb, yb = x[rows], y[rows]

            def batch_loss(flat):  # Keras' mean over the batch's real samples
                losses, metrics = per_sample(flat, xb, yb)
                total, metric_sums = masked_sums(losses, metrics, mask)
                return total / jnp.maximum(count, 1).astype(total.dtype), (total, metric_sums)

            (_, sums), grads = jax.value_and_grad(batch_loss, has_aux=True)(flat)
            updates, new_state = opt.update(grads, state, flat)
            real = count > 0
            flat = jnp.where(real, flat + updates.astype(flat.dtype), flat)
            state = jax.tree.map(lambda new, old: jnp.where(real, new, old), new_state, state)
            return (flat, state), sums

        (flat, state), sums = jax.lax.scan(step, (flat, state), (table, counts))
        return flat, state, jax.tree.map(jnp.sum, sums)

    def evaluate(flat, x, y, count):
        losses, metrics = per_sample(flat, x, y)
        return masked_sums(losses, metrics, jnp.arange(x.shape[0]) < count)

    return TrainingProgram(
        unravel, lambda flat: optimizer(0.0).init(flat),
        jax.jit(counting_traces("nn.jax", run_batches)), jax.jit(counting_traces("nn.jax", evaluate)))


class Trainer:
    """Training state on JAX (see :class:`labcrunch_service.nn.training.Trainer`)."""

    def __init__(self, program: TrainingProgram, weights: list[LayerWeights], x: np.ndarray,
                 y: np.ndarray, batch_size: int, rate: float, dtype: str) -> None:
        self.program, self.batch_size, self.dtype = program, batch_size, dtype
        self.flat, _ = ravel_pytree(_device_weights(weights, dtype))
        self.state = program.init(self.flat)
        self.rate = jnp.asarray(rate, dtype=dtype)
        self.x, self.y = jnp.asarray(_padded_rows(x, dtype)), jnp.asarray(_padded_rows(y, dtype))

    def train(self, order: np.ndarray) -> Sums:
        table, counts = batch_layout(order, self.batch_size)
        self.flat, self.state, (loss, metrics) = self.program.run_batches(
            self.flat, self.state, self.rate, self.x, self.y, table, counts)
        # Awaited here: JAX dispatches asynchronously, and a deadline check that runs ahead of
        # queued work would stop nothing.
        return float(loss), {k: float(v) for k, v in metrics.items()}

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> Sums:
        loss, metrics = self.program.evaluate(self.flat, jnp.asarray(_padded_rows(x, self.dtype)),
                                              jnp.asarray(_padded_rows(y, self.dtype)),
                                              np.int32(x.shape[0]))
        return float(loss), {k: float(v) for k, v in metrics.items()}

    def weights(self) -> list[LayerWeights]:
        return _host_weights(self.program.unravel(self.flat))


@contextmanager
def training(architecture: Architecture, weights: list[LayerWeights], x: np.ndarray, y: np.ndarray,
             *, objective: Objective, optimization: Optimization, batch_size: int,
             dtype: str) -> Iterator[Trainer]:
    key = ("train", architecture, dtype, objective, optimization.optimizer,
           optimization.hyper_parameters)
    program = _programs.get_or_build(key, lambda: _build_training(architecture, dtype, objective,
                                                                  optimization))
    yield Trainer(program, weights, x, y, batch_size, optimization.learning_rate, dtype)
