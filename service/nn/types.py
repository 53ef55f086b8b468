"""What the nn entry functions return: plain numpy data (the HTTP process unpickles it, so it
lives here, away from the frameworks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labcrunch_service.nn.architecture import LayerWeights


@dataclass(frozen=True)
class Prediction:
    outputs: np.ndarray  # (rows, outputs)
    jacobian: np.ndarray | None  # (rows, outputs, inputs)
    warnings: list[str]



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
