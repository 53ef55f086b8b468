"""What training means, for both backends: the objective (Keras' loss on the output or on the
output layer's logits, the metrics), the optimizer, and what a backend's trainer does.

The epoch loop itself (batch orders, validation, progress, divergence) is one, in
:func:`labcrunch_service.nn.dense.train`; each backend only runs minibatches and evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from labcrunch_service.errors import InvalidInput
from labcrunch_service.nn.architecture import LayerWeights
from labcrunch_service.nn.data import CROSS_ENTROPIES, LOGITS_OF, SPARSE

#: Keras' ``backend.epsilon()``: probabilities are clipped to [ε, 1 − ε] before a logarithm.
EPSILON = 1e-7

#: (Σ over samples of the loss, {metric: Σ over samples}) of some rows.
Sums = tuple[float, dict[str, float]]


@dataclass(frozen=True)
class Objective:
    """The loss and the metrics of a training.

    ``pre_activation``: the loss reads the output layer's input to its activation rather than
    its output — as Keras does for a sigmoid output with binary cross-entropy and a softmax output
    with categorical cross-entropy, which it computes from logits (stable, and no clipping).
    ``logits``: the loss reads logits (that, or ``from_logits``). ``metrics``: (name in the
    history, kind) with kinds binary_accuracy, categorical_accuracy, sparse_accuracy, mse, mae.
    """

    loss: str
    pre_activation: bool
    logits: bool
    metrics: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, loss: str, from_logits: bool, output_activation: str, outputs: int,
           metrics: list[str]) -> Objective:
        """422 for from_logits with a loss that has no logits, or an error metric with class
        labels."""
        if from_logits and loss not in CROSS_ENTROPIES:
            raise InvalidInput(f"from_logits applies to the cross-entropy losses, not {loss}.",
                               errors=[{"loc": ["from_logits"], "msg": f"not used by {loss}",
                                        "type": "unsupported"}])
        pre_activation = LOGITS_OF.get(loss) == output_activation
        kinds = []
        for name in dict.fromkeys(metrics):  # in order, once each
            if name == "accuracy":
                kind = ("sparse_accuracy" if loss == SPARSE else
                        "categorical_accuracy" if loss == "categorical_crossentropy" else
                        "binary_accuracy" if loss == "binary_crossentropy" or outputs == 1 else
                        "categorical_accuracy")
            elif loss == SPARSE:
                raise InvalidInput(f"The {name} metric compares one target per output unit; with "
                                   "class labels (sparse_categorical_crossentropy) use accuracy.",
                                   errors=[{"loc": ["metrics"], "msg": f"{name} needs one target "
                                            "per output unit", "type": "unsupported"}])
            else:
                kind = name
            kinds.append((name, kind))
        return cls(loss, pre_activation, pre_activation or from_logits, tuple(kinds))


@dataclass(frozen=True)
class Optimization:
    optimizer: str
    hyper_parameters: tuple[tuple[str, Any], ...]  # sorted (name, value): hashable, a cache key
    learning_rate: float


class Trainer(Protocol):
    """A backend's training state: the weights, the optimizer's state, the training data."""

    def train(self, order: np.ndarray) -> Sums:
        """Minibatch steps over the training rows in ``order`` (batches of the batch size, the
        last maybe shorter): Σ loss and metrics over the samples, each as the batch saw them
        (before its step), as Keras averages them into an epoch's history."""

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> Sums:
        """Σ loss and metrics over these rows at the current weights."""

    def weights(self) -> list[LayerWeights]: ...
