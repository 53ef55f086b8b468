"""Independent oracles for the dense networks: a numpy forward pass (activations written out from
their textbook definitions) and Keras models built the way the seed notebook builds them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import special

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "gelu": lambda z: 0.5 * z * (1.0 + special.erf(z / math.sqrt(2.0))),
    "selu": lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0))),
    "swish": lambda z: z * special.expit(z),
    "silu": lambda z: z * special.expit(z),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "tanh": np.tanh,
    "sigmoid": special.expit,
    "softmax": _softmax,
    "sin": np.sin,
}


def forward(weights: Sequence[tuple[Any, Any]], activations: Sequence[str], x: Any) -> np.ndarray:
    """activation(h @ kernel + bias), layer by layer, in float64."""
    h = np.asarray(x, dtype=np.float64)
    for (kernel, bias), name in zip(weights, activations, strict=True):
        z = h @ np.asarray(kernel, dtype=np.float64)
        if bias is not None:
            z = z + np.asarray(bias, dtype=np.float64)
        h = ACTIVATIONS[name](z)
    return h


def keras_model(keras: Any, inputs: int, layers: Sequence[tuple[int, str, bool]], *,
                functional: bool = False, dtype: str | None = None) -> Any:
    """``keras.Sequential`` (or the functional API) of Dense(units, activation, use_bias), with
    Keras' own activation names, as the seed notebook writes it."""
    dense = [keras.layers.Dense(units, activation=activation, use_bias=use_bias, dtype=dtype)
             for units, activation, use_bias in layers]
    if not functional:
        return keras.Sequential([keras.Input(shape=(inputs,), dtype=dtype), *dense])
    x_input = keras.Input(shape=(inputs,), dtype=dtype)
    x = x_input
    for layer in dense:
        x = layer(x)
    return keras.Model(inputs=x_input, outputs=x)


def network(inputs: int, layers: Sequence[tuple[int, str] | tuple[int, str, bool]], **extra: Any,
            ) -> dict[str, Any]:
    """The service's JSON spec of a network."""
    return {"inputs": inputs, "layers": [
        {"units": layer[0], "activation": layer[1], "use_bias": layer[2] if len(layer) > 2 else True}
        for layer in layers], **extra}


SEED = network(4, [(64, "relu"), (32, "relu"), (1, "softmax")])
