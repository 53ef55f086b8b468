"""The dense-network operations, one entry function each: the weights of a network, predict
(outputs and their Jacobian), and train — on JAX (:mod:`.on_jax`) or Keras (:mod:`.on_tensorflow`).

Each checks its request against the limits again (the router did before queueing) and answers
plain data: numpy arrays, lists of strings (``warnings``: designs that cannot work).

Training is one epoch loop for both backends. Keras' ``validation_split`` holds out the *last*
rows before any shuffling; the epochs' orders of the training rows are numpy permutations from
``seed`` (:func:`labcrunch_service.fit.descent.batch_orders`), handed to the backend a chunk of
minibatches at a time, with a progress report (``"epochs"``, which also stops the training past
its deadline) between chunks. With the same weights, orders and optimizer both backends take the
same float64 steps, so their histories agree (tests). ``history.loss`` is, as in Keras, the
epoch's minibatch losses averaged, weighted by batch size, each computed before its step; the
``val_`` entries are computed at the epoch's end. Training stops after an epoch whose loss is not
finite (``diverged``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput
from labcrunch_service.fit.descent import batch_orders
from labcrunch_service.minimize import optimizers
from labcrunch_service.nn import on_jax, on_tensorflow
from labcrunch_service.nn.architecture import Architecture, Layer, LayerWeights, Network
from labcrunch_service.nn.checks import check_network, check_predict, check_training
from labcrunch_service.nn.data import inputs_array, split_at, targets_array
from labcrunch_service.nn.design import network_warnings, training_warnings
from labcrunch_service.nn.training import Objective, Optimization, Sums, Trainer
from labcrunch_service.progress import report
from labcrunch_service.settings import Limits, Settings

BACKENDS = {"jax": on_jax, "tensorflow": on_tensorflow}
#: Most rows one compiled forward pass takes (fewer when the layers are wide; see row_slices).
MAX_CHUNK_ROWS = 65_536
#: Most minibatches between two progress reports, and the work between them: about 2^30
#: multiply-adds (batch size × parameters per step).
CHUNK_BATCHES = 4096
CHUNK_WORK = 2**30


def _backend(backend: str) -> Any:
    if backend not in BACKENDS:
        raise InvalidInput(f"Unknown backend {backend!r}; one of {list(BACKENDS)}.",
                           errors=[{"loc": ["backend"], "msg": "unknown", "type": "enum"}])
    return BACKENDS[backend]


def row_slices(rows: int, numbers_per_row: int, limits: Limits) -> list[slice]:
    """Consecutive slices of at most a power-of-two number of rows, few enough that their
    activations (``numbers_per_row`` each) fit limits.max_network_activations."""
    size = max(1, min(MAX_CHUNK_ROWS, limits.max_network_activations // max(numbers_per_row, 1)))
    size = 1 << (size.bit_length() - 1)
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def _reporting(slices: list[slice], rows: int) -> Iterator[slice]:
    """The slices, reporting progress ("rows") before each and at the end."""
    for part in slices:
        report(part.start, rows, "rows")
        yield part
    report(rows, rows, "rows")


def network_weights(network: Network, *, limits: Limits) -> list[LayerWeights]:
    """The network's weights: the given ones, or drawn from its seed (float64)."""
    check_network(network.architecture, limits)
    return network.initial_weights()


@dataclass(frozen=True)
class Prediction:
    outputs: np.ndarray  # (rows, outputs)
    jacobian: np.ndarray | None  # (rows, outputs, inputs)
    warnings: list[str]


def predict(network: Network, x: Any, *, jacobian: bool = False, backend: str = "jax",
            dtype: str = "float64", limits: Limits) -> Prediction:
    """The network's outputs for the rows of ``x`` (and their Jacobian in the inputs)."""
    architecture = network.architecture
    module = _backend(backend)
    x = inputs_array(x, architecture)
    check_predict(architecture, x.shape[0], jacobian, limits)
    numbers_per_row = architecture.units * (architecture.outputs if jacobian else 1)
    chunks = _reporting(row_slices(x.shape[0], numbers_per_row, limits), x.shape[0])
    with np.errstate(all="ignore"):
        outputs, jacobians = module.predict(architecture, network.initial_weights(dtype),
                                            x.astype(dtype), jacobian=jacobian, dtype=dtype,
                                            chunks=chunks)
    return Prediction(outputs, jacobians, network_warnings(architecture))


@dataclass(frozen=True)
class Training:
    history: dict[str, np.ndarray]
    epochs: int
    diverged: bool
    weights: list[LayerWeights]
    loss: str
    optimizer: str
    learning_rate: float
    hyper_parameters: dict[str, Any]
    training_samples: int
    validation_samples: int
    warnings: list[str]


def _optimization(optimizer: str, learning_rate: float | None, options: dict[str, Any],
                  backend: str) -> Optimization:
    try:
        spec, hyper_parameters = optimizers.resolve(optimizer, dict(options), backend)
    except InvalidInput as error:  # resolve() roots its loc in the body; ours are relative
        raise InvalidInput(error.detail, errors=[{**e, "loc": e["loc"][1:]} for e in error.errors or []]
                           ) from None
    if spec.default_learning_rate is None:
        raise InvalidInput(f"{optimizer} chooses its steps by line search on the whole function; "
                           "minibatch training needs an optimizer with a learning rate.",
                           errors=[{"loc": ["optimizer"], "msg": "not for minibatch training",
                                    "type": "unsupported"}])
    rate = spec.default_learning_rate if learning_rate is None else learning_rate
    return Optimization(optimizer, tuple(sorted(hyper_parameters.items())), float(rate))


def _means(sums: Sums, count: int, prefix: str = "") -> dict[str, float]:
    loss, metrics = sums
    return {f"{prefix}loss": loss / count, **{f"{prefix}{k}": v / count for k, v in metrics.items()}}


def _add(a: Sums, b: Sums) -> Sums:
    return a[0] + b[0], {k: a[1].get(k, 0.0) + v for k, v in b[1].items()}


def _epoch(trainer: Trainer, order: np.ndarray, epoch: int, epochs: int, chunk: int) -> Sums:
    """One epoch in chunks of minibatches, reporting progress (and the deadline) between them."""
    n = order.shape[0]
    sums: Sums = (0.0, {})
    for start in range(0, n, chunk):
        report(epoch + start / n, epochs, "epochs")
        sums = _add(sums, trainer.train(order[start:start + chunk]))
    return sums


def _validation(trainer: Trainer, x: np.ndarray, y: np.ndarray, chunks: list[slice]) -> Sums:
    sums: Sums = (0.0, {})
    for rows in chunks:
        sums = _add(sums, trainer.evaluate(x[rows], y[rows]))
    return sums


def train(network: Network, x: Any, y: Any, *, loss: str = "mse", from_logits: bool = False,
          optimizer: str = "adam", learning_rate: float | None = None,
          options: dict[str, Any] | None = None, epochs: int = 10, batch_size: int = 32,
          validation_split: float = 0.0, shuffle: bool = True, seed: int = 0,
          metrics: list[str] | None = None, backend: str = "jax", dtype: str = "float64",
          limits: Limits) -> Training:
    """Train the network on (x, y) by minibatch gradient descent, as Keras' ``fit`` does."""
    architecture = network.architecture
    module = _backend(backend)
    x = inputs_array(x, architecture)
    y = targets_array(y, architecture, loss, x.shape[0])
    training_rows = split_at(x.shape[0], validation_split)
    check_training(architecture, x.shape[0], y.shape[1], training_rows, epochs=epochs,
                   batch_size=batch_size, limits=limits)
    objective = Objective.of(loss, from_logits, architecture.layers[-1].activation,
                             architecture.outputs, list(metrics or []))
    optimization = _optimization(optimizer, learning_rate, options or {}, backend)
    warnings = training_warnings(architecture, loss, from_logits, y)

    x, y = x.astype(dtype), y.astype(dtype)
    x_val, y_val = x[training_rows:], y[training_rows:]
    batch = min(batch_size, training_rows)
    per_chunk = max(1, min(CHUNK_BATCHES, CHUNK_WORK // (batch * max(architecture.parameters, 1))))
    validation_chunks = row_slices(x_val.shape[0], architecture.units, limits)
    history: dict[str, list[float]] = {}
    diverged = False
    done = 0
    with np.errstate(all="ignore"), module.training(
            architecture, network.initial_weights(dtype), x[:training_rows], y[:training_rows],
            objective=objective, optimization=optimization, batch_size=batch,
            dtype=dtype) as trainer:
        for epoch, order in enumerate(batch_orders(training_rows, epochs, shuffle, seed)):
            record = _means(_epoch(trainer, order, epoch, epochs, per_chunk * batch), training_rows)
            if x_val.shape[0]:
                record |= _means(_validation(trainer, x_val, y_val, validation_chunks),
                                 x_val.shape[0], "val_")
            for key, value in record.items():
                history.setdefault(key, []).append(value)
            done = epoch + 1
            if not math.isfinite(record["loss"]):
                diverged = True
                break
        report(done, epochs, "epochs")
        weights = trainer.weights()
    return Training(
        history={k: np.asarray(v, dtype=np.float64) for k, v in history.items()}, epochs=done,
        diverged=diverged, weights=weights, loss=loss, optimizer=optimizer,
        learning_rate=optimization.learning_rate,
        hyper_parameters=dict(optimization.hyper_parameters), training_samples=training_rows,
        validation_samples=int(x_val.shape[0]), warnings=warnings)


SEED_NETWORK = Network(Architecture(4, (Layer(64, "relu"), Layer(32, "relu"), Layer(1, "softmax"))))


def warmup(settings: Settings) -> None:
    """Compile the seed network's JAX forward pass for one row (other shapes compile on first use)."""
    predict(SEED_NETWORK, [[1.0, 2.0, 3.0, 4.0]], limits=settings.limits)
