"""A network's data as checked float arrays: inputs ``x``, targets ``y``, and Keras'
validation split. numpy only (the HTTP process checks data before queueing).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput
from labcrunch_service.nn.architecture import Architecture

#: Losses (Keras' names) and whether their targets are class labels rather than one value per
#: output unit.
LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy")
SPARSE = "sparse_categorical_crossentropy"
CROSS_ENTROPIES = ("binary_crossentropy", "categorical_crossentropy", SPARSE)
METRICS = ("accuracy", "mse", "mae")
#: The output activation whose input (the logits) Keras hands to each cross-entropy instead of
#: the probabilities: it computes these losses from logits, stably, whenever it can.
LOGITS_OF = {"binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}


def reads_logits(loss: str, output_activation: str, from_logits: bool) -> bool:
    """Whether the loss takes the output layer's pre-activation (logits) rather than its output:
    with ``from_logits``, or — as Keras does — when the output layer applies the activation the
    loss pairs with (sigmoid for binary, softmax for categorical cross-entropy; not for the
    sparse one, where Keras clips the probabilities)."""
    return LOGITS_OF.get(loss) == output_activation or (from_logits and loss in CROSS_ENTROPIES)


def _invalid(detail: str, loc: list[Any], msg: str, kind: str = "value") -> InvalidInput:
    return InvalidInput(detail, errors=[{"loc": loc, "msg": msg, "type": kind}])


def _float_array(values: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):  # ragged lists
        raise _invalid(f"{where} must be a table: a list of rows of equal length.", [where],
                       "rows of different lengths", "shape") from None
    if not np.isfinite(array).all():
        raise _invalid(f"{where} holds non-finite numbers (NaN or infinity).", [where],
                       "non-finite", "value")
    return array


def inputs_array(x: Any, architecture: Architecture, where: str = "x") -> np.ndarray:
    """``x`` as a float64 array (rows, inputs); 422 for another shape or non-finite numbers.

    A batch is a list of rows, even for one sample (``[[1, 2, 3, 4]]``, as Keras wants it).
    """
    array = _float_array(x, where)
    if array.shape == (0,):  # an empty batch: no rows
        array = array.reshape(0, architecture.inputs)
    if array.ndim != 2 or array.shape[1] != architecture.inputs:
        example = "[[" + ", ".join(str(i + 1) for i in range(min(architecture.inputs, 4))) + \
            (", ..." if architecture.inputs > 4 else "") + "]]"
        raise _invalid(f"{where} has shape {array.shape}; the network takes rows of "
                       f"{architecture.inputs} inputs: shape (rows, {architecture.inputs}), e.g. "
                       f"{example} for one sample.", [where],
                       f"shape {array.shape}, expected (rows, {architecture.inputs})", "shape")
    return array


def targets_array(y: Any, architecture: Architecture, loss: str, rows: int,
                  where: str = "y") -> np.ndarray:
    """``y`` as a float64 array (rows, outputs) — or (rows, 1) class labels for the sparse
    loss; a 1-D ``y`` is one column. 422 for another shape, a row count other than ``x``'s,
    non-finite numbers, or labels that are not integers in [0, outputs)."""
    array = _float_array(y, where)
    if array.ndim == 1:
        array = array[:, None]
    columns = 1 if loss == SPARSE else architecture.outputs
    if array.ndim != 2 or array.shape[0] != rows or array.shape[1] != columns:
        what = ("one class label per row" if loss == SPARSE else
                f"one column per output unit ({columns})")
        hint = (" (class labels go with sparse_categorical_crossentropy)"
                if loss != SPARSE and columns > 1 and array.ndim == 2 and array.shape[1] == 1 else "")
        raise _invalid(f"{where} has shape {array.shape}; expected ({rows}, {columns}): {rows} "
                       f"rows as x, {what}{hint}.", [where],
                       f"shape {array.shape}, expected ({rows}, {columns})", "shape")
    if loss == SPARSE:
        bad = (array != np.floor(array)) | (array < 0) | (array >= architecture.outputs)
        if bad.any():
            row = int(np.argmax(bad[:, 0]))
            raise _invalid(f"{where}[{row}] = {array[row, 0]:g} is not a class label: labels are "
                           f"integers from 0 to {architecture.outputs - 1} (one per output unit).",
                           [where, row], "not a class label", "value")
    return array


def split_at(rows: int, validation_split: float) -> int:
    """How many leading rows train: Keras' ``validation_split`` keeps the *last* fraction of the
    data for validation, before any shuffling (``floor(rows·(1 − split))``, as Keras computes it).
    422 when either part would be empty."""
    if validation_split == 0:
        if rows == 0:
            raise _invalid("Training needs at least one sample; x has none.", ["x"], "no rows",
                           "value")
        return rows
    at = int(math.floor(rows * (1.0 - validation_split)))
    if at == 0 or at == rows:
        raise _invalid(f"{rows} samples cannot be split into training and validation parts with "
                       f"validation_split {validation_split:g}: one part would be empty.",
                       ["validation_split"], "leaves an empty part", "value")
    return at
