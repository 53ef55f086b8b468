"""A dense network as plain numbers: its layers, their shapes and parameter counts (what Keras'
``model.summary()`` prints), Keras-style initial weights, and the checks of given weights.

numpy only: the HTTP process builds and checks networks with it before anything is queued.

A layer computes ``activation(x @ kernel + bias)`` with a kernel of shape (fan_in, units) and a
bias of shape (units,) (absent with ``use_bias: false``), as ``keras.layers.Dense`` does; its
parameter count is fan_in·units (+ units). The activations are the one-argument functions of the
``/v1/gradient`` language with their definitions there, plus ``linear`` (the identity, Keras'
default) and ``softmax``, which normalises over the layer's units (so over one unit it is the
constant 1).

Initial weights from a ``seed`` follow Keras' defaults: Glorot-uniform kernels (uniform on
±√(6/(fan_in + units))) and zero biases, drawn layer by layer from ``numpy.random.default_rng(seed)``
— the same distribution as Keras, not the same numbers (Keras has its own generator).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput
from labcrunch_service.language.vocabulary import FUNCTIONS

#: Activations Keras also offers, in the order the API lists them; then the language's other
#: one-argument functions.
KERAS_ACTIVATIONS = ("linear", "relu", "elu", "gelu", "selu", "swish", "silu", "softplus", "tanh",
                     "sigmoid", "softmax")
ACTIVATIONS: tuple[str, ...] = KERAS_ACTIVATIONS + tuple(sorted(
    name for name, arities in FUNCTIONS.items() if 1 in arities and name not in KERAS_ACTIVATIONS))

#: Where a kernel or bias error points: (layer index, "kernel" | "bias") → loc.
WeightsLoc = Callable[[int, str], list[Any]]


def json_weights_loc(index: int, part: str) -> list[Any]:
    """Weights given in the JSON spec: ``network.weights[i].kernel``."""
    return ["network", "weights", index, part]


def npz_weights_loc(index: int, part: str) -> list[Any]:
    """Weights given as .npz members ``kernel_<i>``, ``bias_<i>``."""
    return [weight_name(index, part)]


def weight_name(index: int, part: str) -> str:
    """The .npz member of layer ``index``'s ``part``: ``kernel_0``, ``bias_0``, ..."""
    return f"{part}_{index}"


@dataclass(frozen=True)
class Layer:
    units: int
    activation: str = "linear"
    use_bias: bool = True


@dataclass(frozen=True)
class Architecture:
    """Inputs and layers; hashable, so it keys the compiled programs of each backend."""

    inputs: int
    layers: tuple[Layer, ...]

    @property
    def outputs(self) -> int:
        return self.layers[-1].units

    @property
    def fan_ins(self) -> list[int]:
        return [self.inputs] + [layer.units for layer in self.layers[:-1]]

    def layer_parameters(self) -> list[int]:
        return [fan_in * layer.units + (layer.units if layer.use_bias else 0)
                for fan_in, layer in zip(self.fan_ins, self.layers, strict=True)]

    @property
    def parameters(self) -> int:
        return sum(self.layer_parameters())

    @property
    def units(self) -> int:
        """Units of all layers together: the numbers one sample's forward pass holds."""
        return sum(layer.units for layer in self.layers)

    def summary(self) -> dict[str, Any]:
        """What ``model.summary()`` shows: per layer its name, output shape and parameters."""
        layers = [{"name": layer_name(i), "type": "Dense", "units": layer.units,
                   "activation": layer.activation, "use_bias": layer.use_bias,
                   "output_shape": [None, layer.units], "parameters": count}
                  for i, (layer, count) in enumerate(zip(self.layers, self.layer_parameters(),
                                                         strict=True))]
        total = self.parameters
        return {"inputs": self.inputs, "input_shape": [None, self.inputs], "layers": layers,
                "total_parameters": total, "trainable_parameters": total,
                "non_trainable_parameters": 0}


def layer_name(index: int) -> str:
    """Keras' names in a fresh session: dense, dense_1, dense_2, ..."""
    return "dense" if index == 0 else f"dense_{index}"


#: One layer's weights: kernel (fan_in, units) and bias (units,), or None without a bias.
LayerWeights = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class Network:
    """An architecture with explicit ``weights``, or a ``seed`` to draw them from."""

    architecture: Architecture
    seed: int = 0
    weights: tuple[LayerWeights, ...] | None = None

    def initial_weights(self, dtype: str = "float64") -> list[LayerWeights]:
        """The given weights, or Glorot-uniform kernels and zero biases drawn from ``seed``."""
        if self.weights is not None:
            return [(k.astype(dtype), None if b is None else b.astype(dtype)) for k, b in self.weights]
        rng = np.random.default_rng(self.seed)
        drawn = []
        for fan_in, layer in zip(self.architecture.fan_ins, self.architecture.layers, strict=True):
            limit = math.sqrt(6.0 / (fan_in + layer.units))
            kernel = rng.uniform(-limit, limit, size=(fan_in, layer.units)).astype(dtype)
            drawn.append((kernel, np.zeros(layer.units, dtype=dtype) if layer.use_bias else None))
        return drawn


def _invalid(detail: str, loc: list[Any], msg: str, kind: str = "value") -> InvalidInput:
    return InvalidInput(detail, errors=[{"loc": loc, "msg": msg, "type": kind}])


def _weight_array(value: Any, shape: tuple[int, ...], loc: list[Any], what: str) -> np.ndarray:
    """``value`` (nested lists or an array) as a finite float64 array of ``shape``; 422 naming
    ``loc`` otherwise."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):  # ragged lists
        raise _invalid(f"{what} must be a {len(shape)}-dimensional array of shape {shape}; its rows "
                       "differ in length.", loc, "ragged", "shape") from None
    if array.shape != shape:
        raise _invalid(f"{what} has shape {array.shape}; the architecture needs {shape}.", loc,
                       f"shape {array.shape}, expected {shape}", "shape")
    if not np.isfinite(array).all():
        raise _invalid(f"{what} holds non-finite numbers.", loc, "non-finite", "value")
    return array


def checked_weights(architecture: Architecture, weights: Sequence[tuple[Any, Any]],
                    where: WeightsLoc = json_weights_loc) -> tuple[LayerWeights, ...]:
    """Given weights, one (kernel, bias) per layer, as float64 arrays of the architecture's shapes.

    422 naming the layer and part (``where``): a missing or extra layer, a wrong shape, a bias for
    a layer without one or none for a layer with one, non-finite numbers.
    """
    layers = architecture.layers
    if len(weights) != len(layers):
        raise _invalid(f"weights has {len(weights)} entries; the network has {len(layers)} layers "
                       "(one {kernel, bias} each).", ["network", "weights"],
                       f"{len(weights)} entries for {len(layers)} layers", "length")
    checked = []
    for i, ((kernel, bias), fan_in, layer) in enumerate(zip(weights, architecture.fan_ins, layers,
                                                            strict=True)):
        name = layer_name(i)
        kernel_array = _weight_array(kernel, (fan_in, layer.units), where(i, "kernel"),
                                     f"The kernel of layer {i} ({name})")
        if not layer.use_bias:
            if bias is not None:
                raise _invalid(f"Layer {i} ({name}) has use_bias false; give no bias for it.",
                               where(i, "bias"), "the layer has no bias", "extra")
            checked.append((kernel_array, None))
            continue
        if bias is None:
            raise _invalid(f"Layer {i} ({name}) has a bias; give it ({layer.units} numbers), or "
                           "set use_bias false.", where(i, "bias"), "missing", "missing")
        checked.append((kernel_array, _weight_array(bias, (layer.units,), where(i, "bias"),
                                                    f"The bias of layer {i} ({name})")))
    return tuple(checked)


def weights_from_arrays(architecture: Architecture, arrays: dict[str, np.ndarray],
                        ) -> tuple[LayerWeights, ...] | None:
    """Weights sent as .npz members ``kernel_<i>`` and ``bias_<i>`` (None when there are none);
    422 naming a missing member or any other name."""
    names = [n for n in arrays if n.startswith(("kernel_", "bias_"))]
    if not names:
        return None
    expected = {weight_name(i, part) for i, layer in enumerate(architecture.layers)
                for part in (("kernel", "bias") if layer.use_bias else ("kernel",))}
    for name in names:
        if name not in expected:
            raise _invalid(f"The .npz member {name!r} is no weight of this network (expected "
                           f"{', '.join(sorted(expected))}).", [name], "not a weight of the network",
                           "extra")
    for name in sorted(expected):
        if name not in arrays:
            raise _invalid(f"The .npz has weights but lacks {name!r}.", [name], "missing", "missing")
    weights = [(arrays[weight_name(i, "kernel")], arrays.get(weight_name(i, "bias")))
               for i in range(len(architecture.layers))]
    return checked_weights(architecture, weights, npz_weights_loc)
