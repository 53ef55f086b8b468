"""Reading arrays from answers: JSON numbers (non-finite as strings) or .npy/.npz bodies."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def number(value: Any) -> float:
    """A JSON number, or one of the server's non-finite spellings, as a float."""
    if isinstance(value, str):
        return _NON_FINITE[value]
    return float(value)


def array(value: Any, dtype: Any = np.float64) -> np.ndarray:
    """Nested JSON lists (with non-finite spellings) → a numpy array."""
    if isinstance(value, list | tuple):
        return np.array(_replace(value), dtype=dtype)
    return np.asarray(number(value) if isinstance(value, str) else value, dtype=dtype)


def json_numbers(values: Any) -> Any:
    """An array (any shape) as nested JSON lists, non-finite values in the server's spelling."""
    arr = np.asarray(values, dtype=np.float64)
    if np.isfinite(arr).all():
        return arr.tolist()
    spelled = arr.astype(object)
    bad = ~np.isfinite(arr)
    spelled[bad] = [_spell(v) for v in arr[bad].tolist()]
    return spelled.tolist()


def _spell(v: float) -> str:
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _replace(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_replace(v) for v in value]
    if isinstance(value, str):
        return _NON_FINITE[value]
    return value


def to_npy(arr: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def to_npz(arrays: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def from_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
