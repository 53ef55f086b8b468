"""Limits of the dense-network operations: plain arithmetic on the request's sizes, checked in
the HTTP process before any work is queued, and again by each entry function."""

from __future__ import annotations

import math

from labcrunch_service.errors import LimitExceeded
from labcrunch_service.nn.architecture import Architecture
from labcrunch_service.settings import Limits


def _over(what: str, value: int, maximum: int, limit: str) -> LimitExceeded:
    return LimitExceeded(f"{what} is {value:,}; at most {maximum:,} (limits.{limit}).",
                         limit=limit, maximum=maximum, value=value)


def check_network(architecture: Architecture, limits: Limits) -> None:
    """413 for more layers than ``max_network_layers`` or parameters than ``max_network_parameters``."""
    if len(architecture.layers) > limits.max_network_layers:
        raise _over("The number of layers", len(architecture.layers), limits.max_network_layers,
                    "max_network_layers")
    if architecture.parameters > limits.max_network_parameters:
        raise _over("The number of parameters", architecture.parameters,
                    limits.max_network_parameters, "max_network_parameters")


def _check_values(what: str, count: int, limits: Limits) -> None:
    if count > limits.max_network_values:
        raise _over(what, count, limits.max_network_values, "max_network_values")


def check_predict(architecture: Architecture, rows: int, jacobian: bool, limits: Limits) -> None:
    """413 for a network over the limits, or inputs or outputs (with the Jacobian: rows ×
    outputs × inputs more) over ``max_network_values``."""
    check_network(architecture, limits)
    _check_values("The number of inputs (rows x inputs)", rows * architecture.inputs, limits)
    answer = rows * architecture.outputs * (1 + (architecture.inputs if jacobian else 0))
    _check_values("The number of numbers answered (outputs" + (" and Jacobian)" if jacobian else ")"),
                  answer, limits)


def check_training(architecture: Architecture, rows: int, target_columns: int, training_rows: int, *,
                   epochs: int, batch_size: int, limits: Limits) -> None:
    """413 for a network, data, epochs, batch size, one batch's activations or minibatch steps
    (epochs × batches of the ``training_rows``) over the limits."""
    check_network(architecture, limits)
    _check_values("The number of data values (rows x (inputs + target columns))",
                  rows * (architecture.inputs + target_columns), limits)
    if epochs > limits.max_training_epochs:
        raise _over("epochs", epochs, limits.max_training_epochs, "max_training_epochs")
    if batch_size > limits.max_training_batch_size:
        raise _over("batch_size", batch_size, limits.max_training_batch_size,
                    "max_training_batch_size")
    batch = min(batch_size, max(training_rows, 1))
    if batch * architecture.units > limits.max_network_activations:
        raise _over(f"One minibatch's activations (batch {batch} x {architecture.units} units)",
                    batch * architecture.units, limits.max_network_activations,
                    "max_network_activations")
    steps = epochs * math.ceil(training_rows / batch)
    if steps > limits.max_training_steps:
        raise _over(f"The number of minibatch steps ({epochs} epochs x "
                    f"{math.ceil(training_rows / batch)} batches)", steps,
                    limits.max_training_steps, "max_training_steps")
