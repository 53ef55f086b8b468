"""Client methods and result types for the gradient endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from labcrunch import _arrays
from labcrunch._base import Call

#: Batches at least this large travel as .npz both ways (unless ``binary`` says otherwise).
BINARY_THRESHOLD = 10_000


@dataclass(frozen=True)
class GradientResult:
    """Derivatives at one point (0-d ``value``) or a batch (``value`` of shape (N,)).

    ``gradient`` maps each variable to ∂value/∂variable; ``hessian`` (order 2) has rows and
    columns in ``variables`` order, shape (n, n) or (N, n, n).
    """

    variables: tuple[str, ...]
    value: np.ndarray
    gradient: dict[str, np.ndarray]
    hessian: np.ndarray | None
    backend: str
    dtype: str
    device: str
    elapsed_ms: float

    @property
    def gradient_matrix(self) -> np.ndarray:
        """The gradient as one array, shape (n,) or (N, n), columns in ``variables`` order."""
        return np.stack([self.gradient[v] for v in self.variables], axis=-1) if self.variables \
            else np.zeros((*self.value.shape, 0))


def _from_json(body: dict[str, Any]) -> GradientResult:
    hessian = body.get("hessian")
    return GradientResult(
        variables=tuple(body["variables"]),
        value=_arrays.array(body["value"]),
        gradient={k: _arrays.array(v) for k, v in body["gradient"].items()},
        hessian=None if hessian is None else _arrays.array(hessian),
        backend=body["backend"], dtype=body["dtype"], device=body["device"],
        elapsed_ms=float(body["elapsed_ms"]))


def _from_npz(response: httpx.Response, backend: str, dtype: str) -> GradientResult:
    arrays = _arrays.from_npz(response.content)
    variables = tuple(str(v) for v in arrays["variables"])
    gradient = arrays["gradient"]
    return GradientResult(
        variables=variables, value=arrays["value"],
        gradient={v: gradient[..., i] for i, v in enumerate(variables)},
        hessian=arrays.get("hessian"), backend=backend, dtype=dtype,
        device=str(arrays["device"]), elapsed_ms=float(arrays["elapsed_ms"]))


class GradientAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""

    def gradient(
        self,
        expression: str | None = None,
        *,
        program: str | None = None,
        function: str | None = None,
        at: Mapping[str, Any] | None = None,
        order: int = 1,
        backend: str = "jax",
        dtype: str = "float64",
        binary: bool | None = None,
        **call_options: Any,
    ) -> Any:
        """``POST /v1/gradient``: value, gradient (and Hessian for ``order=2``).

        ``at`` maps each free variable to a number or a 1-D array (a batch). ``binary`` sends
        and receives .npz instead of JSON; by default batches of ``BINARY_THRESHOLD`` points or
        more go binary. Returns a :class:`GradientResult`.
        """
        at = dict(at or {})
        options = {"expression": expression, "program": program, "function": function,
                   "order": order, "backend": backend, "dtype": dtype}
        options = {k: v for k, v in options.items() if v is not None}
        columns = {k: np.asarray(v) for k, v in at.items()}
        if binary is None:
            binary = max((c.size for c in columns.values()), default=0) >= BINARY_THRESHOLD
        if binary:
            return self._send(Call(
                "POST", "/v1/gradient", content=_arrays.to_npz(columns), params=options,
                headers={"Content-Type": _arrays.NPZ_MEDIA_TYPE, "Accept": _arrays.NPZ_MEDIA_TYPE},
                parse=lambda r: _from_npz(r, backend, dtype), **call_options))
        body = {**options, "at": {k: _jsonable(c) for k, c in columns.items()}}
        return self._send(Call("POST", "/v1/gradient", json=body,
                               parse=lambda r: _from_json(r.json()), **call_options))


def _jsonable(column: np.ndarray) -> Any:
    """A number or list for JSON, with non-finite values spelled as the server reads them."""
    values = column.astype(np.float64).tolist()
    if column.ndim == 0:
        return _spell(values)
    return [_spell(v) for v in values]


def _spell(v: float) -> float | str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return v
