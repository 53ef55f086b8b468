"""Names of the choices the API offers, as ``Literal`` types shared by several domains."""

from __future__ import annotations

from typing import Literal

#: Where a computation runs: JAX (jit, vmap, grad) or TensorFlow (where the server has it).
Backend = Literal["jax", "tensorflow"]

#: Floating-point precision of a computation.
DType = Literal["float32", "float64"]
