"""Warnings for network designs that cannot work, or cannot work well: answered beside the
result (``warnings``), never as errors — Keras would run them too.

numpy only. :func:`network_warnings` looks at the architecture alone (summary, predict);
:func:`training_warnings` also at the loss and the targets.
"""

from __future__ import annotations

import numpy as np

from labcrunch_service.nn.architecture import Architecture, layer_name
from labcrunch_service.nn.data import CROSS_ENTROPIES, SPARSE

#: Activations whose derivative is zero wherever it exists: nothing before them can learn.
FLAT = ("floor", "ceil", "sign")
#: The closed range of each bounded output activation (None: unbounded on that side).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, None),
    "softplus": (0.0, None), "elu": (-1.0, None), "erf": (-1.0, 1.0), "erfc": (0.0, 2.0),
    "exp": (0.0, None), "square": (0.0, None), "abs": (0.0, None),
}


def network_warnings(architecture: Architecture) -> list[str]:
    warnings = []
    last = len(architecture.layers) - 1
    for i, layer in enumerate(architecture.layers):
        where = f"Layer {i} ({layer_name(i)})"
        if layer.activation == "softmax" and layer.units == 1:
            after = ("the network's output is always 1" if i == last else
                     "every later layer sees a constant")
            warnings.append(
                f"{where} applies softmax to 1 unit: softmax normalises over the layer's units, "
                f"so its output is the constant 1 — {after}, and no weight before it can learn. "
                "For one unit use sigmoid (a probability) or linear; softmax needs 2 or more units.")
        elif layer.activation in FLAT:
            warnings.append(f"{where} applies {layer.activation}, whose derivative is 0 wherever it "
                            "exists: no weight before it can learn by gradient descent.")
    return warnings


def training_warnings(architecture: Architecture, loss: str, from_logits: bool,
                      y: np.ndarray) -> list[str]:
    """Warnings about the loss for this output layer and these targets."""
    warnings = network_warnings(architecture)
    output = architecture.layers[-1]
    activation, units = output.activation, output.units
    if loss in ("categorical_crossentropy", SPARSE) and units == 1:
        warnings.append(f"{loss} over 1 output unit is identically 0 (a single class always has "
                        "probability 1): nothing can learn. Use binary_crossentropy for two "
                        "classes with one unit.")
    if loss in CROSS_ENTROPIES and not from_logits and activation not in ("sigmoid", "softmax"):
        warnings.append(f"{loss} reads the outputs as probabilities, but the output layer applies "
                        f"{activation}: outputs outside [0, 1] are clipped to [1e-7, 1 - 1e-7], "
                        "where the loss is flat and nothing learns. Use a sigmoid (or softmax) "
                        "output, or from_logits true for a linear one.")
    if from_logits and activation in ("sigmoid", "softmax"):
        warnings.append(f"from_logits is true, but the output layer applies {activation}: its "
                        "outputs are probabilities, not logits. As Keras does, the loss is "
                        f"computed from the {activation}'s input.")
    if loss == "binary_crossentropy" and y.size and (y.min() < 0 or y.max() > 1):
        warnings.append("binary_crossentropy expects targets in [0, 1]; y has values outside.")
    if loss == "categorical_crossentropy" and y.size and (
            y.min() < 0 or not np.allclose(y.sum(axis=1), 1.0)):
        warnings.append("categorical_crossentropy expects each row of y to be a probability "
                        "distribution (one-hot for classes); some rows are not.")
    if loss in ("mse", "mae") and activation in ("sigmoid", "softmax") and y.size and \
            np.isin(y, (0.0, 1.0)).all():
        warnings.append(f"A {activation} output trained with {loss} on 0/1 targets learns slowly: "
                        "its gradient vanishes where the output saturates. binary_crossentropy "
                        "(or categorical_crossentropy) is the loss for classification.")
    if loss in ("mse", "mae") and activation in RANGES and y.size:
        low, high = RANGES[activation]
        if (low is not None and y.min() < low) or (high is not None and y.max() > high):
            span = f"[{'-∞' if low is None else f'{low:g}'}, {'∞' if high is None else f'{high:g}'}]"
            warnings.append(f"The output layer applies {activation}, whose values lie in {span}; "
                            "some targets lie outside, which the network can never reach.")
    return warnings
