"""A dense network as a Keras model: the forward pass (and its Jacobian), and training with
Keras' own ``fit``, losses and the ``tf.keras`` optimizers of /v1/minimize.

Models are cached per architecture and dtype (predict) or per architecture, dtype, loss and
optimizer (training) and reused under a lock: each use sets its weights and resets the
optimizer's variables, so a new request with the same shapes traces nothing. Where Keras would
round through float32 we keep float64: the learning rate is read from a float64 variable (Keras
stores a float rate in float32), and the history reads float64 metrics that compute the loss per
sample (Keras' own loss tracker is float32). The data reach Keras as a ``tf.data`` dataset of the
request's dtype, in the batches the shared epoch orders give.

The activations are the language's TensorFlow functions (:mod:`labcrunch_service.language.ops`),
softmax is ``tf.nn.softmax``. When the loss reads the output layer's pre-activation (see
:class:`~labcrunch_service.nn.training.Objective`) the training model ends before that
activation and the loss reads logits: the loss Keras computes for its own sigmoid/softmax
outputs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from labcrunch_service import backends
from labcrunch_service.cache import LruCache
from labcrunch_service.language.ops import backend_ops
from labcrunch_service.minimize.optimizers import build_keras
from labcrunch_service.nn.architecture import Architecture, LayerWeights, layer_name
from labcrunch_service.nn.data import SPARSE
from labcrunch_service.nn.training import Objective, Optimization, Sums

#: Minibatch steps per graph call in ``fit`` (the same arithmetic, far less overhead).
STEPS_PER_EXECUTION = 32
#: The history's float64 loss: a metric computing the loss per sample (Keras' tracker is float32).
SAMPLE_LOSS = "sample_loss"

#: Keras models hold their weights and optimizer state (up to ~3 × max_network_parameters
#: numbers each): a few, not compile_cache_size of them.
_models: LruCache[Any] = LruCache(8, name="nn.tensorflow")


def activation(tf: ModuleType, name: str, dtype: str) -> Callable[[Any], Any] | None:
    if name == "linear":
        return None  # Keras' linear
    if name == "softmax":
        return lambda z: tf.nn.softmax(z, axis=-1)
    return backend_ops("tensorflow", dtype).functions[name]


def _model(tf: ModuleType, architecture: Architecture, dtype: str, *, logits: bool = False) -> Any:
    """``keras.Sequential`` of Dense layers; with ``logits`` the last layer stops before its
    activation."""
    keras = tf.keras
    layers = [keras.Input((architecture.inputs,), dtype=dtype)]
    last = len(architecture.layers) - 1
    for i, layer in enumerate(architecture.layers):
        act = None if logits and i == last else activation(tf, layer.activation, dtype)
        layers.append(keras.layers.Dense(layer.units, activation=act, use_bias=layer.use_bias,
                                         dtype=dtype, name=layer_name(i)))
    return keras.Sequential(layers)


def _keras_weights(weights: list[LayerWeights], dtype: str) -> list[np.ndarray]:
    return [a.astype(dtype) for kernel, bias in weights
            for a in ((kernel,) if bias is None else (kernel, bias))]


def _layer_weights(model: Any, architecture: Architecture) -> list[LayerWeights]:
    flat = iter(model.get_weights())
    return [(next(flat), next(flat) if layer.use_bias else None) for layer in architecture.layers]


# --- predict ----------------------------------------------------------------------------------

class _Predictor:
    def __init__(self, tf: ModuleType, architecture: Architecture, dtype: str) -> None:
        self.tf, self.model, self.lock = tf, _model(tf, architecture, dtype), threading.Lock()


def predict(architecture: Architecture, weights: list[LayerWeights], x: np.ndarray, *,
            jacobian: bool, dtype: str, chunks: Iterator[slice]) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs (rows, outputs) and, with ``jacobian``, (rows, outputs, inputs) of the Keras model
    with these weights, over ``chunks`` of rows."""
    tf = backends.tensorflow()
    predictor = _models.get_or_build(("predict", architecture, dtype),
                                     lambda: _Predictor(tf, architecture, dtype))
    outputs, jacobians = [], []
    with predictor.lock:
        predictor.model.set_weights(_keras_weights(weights, dtype))
        for rows in chunks:
            part = tf.constant(x[rows], dtype=dtype)
            if jacobian:
                with tf.GradientTape() as tape:
                    tape.watch(part)
                    out = predictor.model(part, training=False)
                jacobians.append(tape.batch_jacobian(out, part).numpy())
            else:
                out = predictor.model(part, training=False)
            outputs.append(out.numpy())
    out = np.concatenate(outputs) if outputs else np.zeros((0, architecture.outputs), dtype=dtype)
    if not jacobian:
        return out, None
    return out, (np.concatenate(jacobians) if jacobians else
                 np.zeros((0, architecture.outputs, architecture.inputs), dtype=dtype))


# --- losses and metrics -----------------------------------------------------------------------

def _loss(keras: Any, objective: Objective, dtype: str) -> tuple[Any, Callable[..., Any]]:
    """Keras' loss object for ``compile`` and the same loss per sample (for the float64 history)."""
    logits = {"from_logits": objective.logits}
    if objective.loss == "mse":
        return keras.losses.MeanSquaredError(dtype=dtype), keras.losses.mse
    if objective.loss == "mae":
        return keras.losses.MeanAbsoluteError(dtype=dtype), keras.losses.mae
    if objective.loss == "binary_crossentropy":
        return (keras.losses.BinaryCrossentropy(**logits, dtype=dtype),
                lambda y, p: keras.losses.binary_crossentropy(y, p, **logits))
    if objective.loss == "categorical_crossentropy":
        return (keras.losses.CategoricalCrossentropy(**logits, dtype=dtype),
                lambda y, p: keras.losses.categorical_crossentropy(y, p, **logits))
    assert objective.loss == SPARSE, objective.loss
    return (keras.losses.SparseCategoricalCrossentropy(**logits, dtype=dtype),
            lambda y, p: keras.losses.sparse_categorical_crossentropy(y, p, **logits))


def _metrics(tf: ModuleType, objective: Objective, output_activation: Callable[[Any], Any] | None,
             ) -> dict[str, Callable[..., Any]]:
    """``{name: (y, model output) → value per sample}``, as :func:`.on_jax.sample_metrics`. The
    model's output is what the loss reads; the network's output applies the last activation
    to it when the training model ends before that activation."""
    def network_output(read):
        return output_activation(read) if objective.pre_activation and output_activation else read

    def binary_accuracy(y, read):
        predicted = read > 0 if objective.logits else network_output(read) > 0.5
        return tf.reduce_mean(tf.cast(predicted == (y > 0.5), read.dtype), axis=-1)

    def categorical_accuracy(y, read):
        return tf.cast(tf.argmax(network_output(read), axis=-1) == tf.argmax(y, axis=-1), read.dtype)

    def sparse_accuracy(y, read):
        labels = tf.cast(y[:, 0], tf.int64)
        return tf.cast(tf.argmax(network_output(read), axis=-1) == labels, read.dtype)

    kinds = {"binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
             "sparse_accuracy": sparse_accuracy,
             "mse": lambda y, read: tf.reduce_mean(tf.square(y - network_output(read)), axis=-1),
             "mae": lambda y, read: tf.reduce_mean(tf.abs(y - network_output(read)), axis=-1)}
    return {name: kinds[kind] for name, kind in objective.metrics}


# --- training ---------------------------------------------------------------------------------

class _Training:
    """A compiled Keras model and optimizer for one architecture, dtype, loss and optimizer."""

    def __init__(self, tf: ModuleType, architecture: Architecture, dtype: str, objective: Objective,
                 optimization: Optimization) -> None:
        keras = tf.keras
        self.tf, self.architecture, self.dtype = tf, architecture, dtype
        self.lock = threading.Lock()
        self.model = _model(tf, architecture, dtype, logits=objective.pre_activation)
        # Keras keeps a float learning rate in float32; a callable one (documented Keras API)
        # reading our own variable keeps it exact.
        self.rate = tf.Variable(tf.zeros([], dtype=dtype))
        self.optimizer = build_keras(tf, optimization.optimizer, lambda: self.rate.read_value(),
                                     dict(optimization.hyper_parameters))
        self.optimizer.build(self.model.trainable_variables)
        self.fresh_state = [v.numpy() for v in self.optimizer.variables]  # step count, moments
        loss, self.sample_loss = _loss(keras, objective, dtype)
        output = activation(tf, architecture.layers[-1].activation, dtype)
        self.metrics = _metrics(tf, objective, output)
        wrapped = [keras.metrics.MeanMetricWrapper(fn, name=name, dtype=dtype)
                   for name, fn in {SAMPLE_LOSS: self.sample_loss, **self.metrics}.items()]
        self.model.compile(optimizer=self.optimizer, loss=loss, metrics=wrapped,
                           steps_per_execution=STEPS_PER_EXECUTION)

    def reset(self, weights: list[LayerWeights], learning_rate: float) -> None:
        self.model.set_weights(_keras_weights(weights, self.dtype))
        self.rate.assign(learning_rate)
        for variable, fresh in zip(self.optimizer.variables, self.fresh_state, strict=True):
            variable.assign(fresh)


class Trainer:
    """Training state on Keras (see :class:`labcrunch_service.nn.training.Trainer`)."""

    def __init__(self, training: _Training, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        self.training, self.batch_size = training, batch_size
        self.x, self.y = x.astype(training.dtype), y.astype(training.dtype)

    def train(self, order: np.ndarray) -> Sums:
        tf = self.training.tf
        # Our order, so both backends see the same batches; a tf.data dataset, because Keras casts
        # float64 numpy inputs to float32 (its floatx) but keeps a dataset's dtype.
        batches = tf.data.Dataset.from_tensor_slices((self.x[order], self.y[order]))
        fitted = self.training.model.fit(batches.batch(self.batch_size), epochs=1, shuffle=False,
                                         verbose=0).history
        n = order.shape[0]  # the metrics are means over the samples: back to sums
        return fitted[SAMPLE_LOSS][0] * n, {name: fitted[name][0] * n
                                            for name in self.training.metrics}

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> Sums:
        training = self.training
        read = training.model(training.tf.constant(x, dtype=training.dtype), training=False)
        target = training.tf.constant(y, dtype=training.dtype)
        return (float(np.sum(training.sample_loss(target, read).numpy())),
                {name: float(np.sum(fn(target, read).numpy())) for name, fn in training.metrics.items()})

    def weights(self) -> list[LayerWeights]:
        return _layer_weights(self.training.model, self.training.architecture)


@contextmanager
def training(architecture: Architecture, weights: list[LayerWeights], x: np.ndarray, y: np.ndarray,
             *, objective: Objective, optimization: Optimization, batch_size: int,
             dtype: str) -> Iterator[Trainer]:
    tf = backends.tensorflow()
    key = ("train", architecture, dtype, objective, optimization.optimizer,
           optimization.hyper_parameters)
    entry = _models.get_or_build(key, lambda: _Training(tf, architecture, dtype, objective,
                                                        optimization))
    with entry.lock:
        entry.reset(weights, optimization.learning_rate)
        yield Trainer(entry, x, y, batch_size)
