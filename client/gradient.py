"""Derivatives of maths given as text: ``Client.gradient`` (``POST /v1/gradient``) and its result.

Examples in this package's docstrings use ``lc``, a :class:`labcrunch.Client`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from numpy.typing import ArrayLike

from labcrunch import _arrays
from labcrunch._base import Call, endpoint, json_answer
from labcrunch._repr import ShortRepr
from labcrunch._types import Backend, DType


@dataclass(frozen=True, repr=False)
class GradientResult(ShortRepr):
    """Derivatives at one point (0-d ``value``) or a batch (``value`` of shape (N,)).

    Attributes:
        variables: The free variables, in the order of the Hessian's rows and columns.
        value: The function's value, shape () or (N,).
        gradient: ∂value/∂variable for each variable, each of ``value``'s shape.
        hessian: Second derivatives (``order=2``), shape (n, n) or (N, n, n); else None.
        backend, dtype, device: Where and how it was computed.
        elapsed_ms: Compute time on the server.

    Arrays from a binary (.npz) answer are read-only views of the answer's bytes, not copies:
    ``.copy()`` one to change it.
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
        if not self.variables:
            return np.zeros((*self.value.shape, 0))
        return np.stack([self.gradient[v] for v in self.variables], axis=-1)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GradientResult:
        """The result from the server's JSON answer (non-finite numbers spelled as strings)."""
        hessian = body.get("hessian")
        return cls(
            variables=tuple(body["variables"]),
            value=_arrays.array(body["value"]),
            gradient={k: _arrays.array(v) for k, v in body["gradient"].items()},
            hessian=None if hessian is None else _arrays.array(hessian),
            backend=body["backend"], dtype=body["dtype"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]))

    @classmethod
    def from_npz(cls, arrays: Mapping[str, np.ndarray], *, backend: str, dtype: str) -> GradientResult:
        """The result from the server's .npz answer (arrays ``variables``, ``value``,
        ``gradient`` with one column per variable, ``hessian``, ``device``, ``elapsed_ms``);
        ``backend`` and ``dtype`` are the request's, unless the archive names them."""
        variables = tuple(str(v) for v in arrays["variables"])
        gradient = arrays["gradient"]
        return cls(
            variables=variables, value=arrays["value"],
            gradient={v: gradient[..., i] for i, v in enumerate(variables)},
            hessian=arrays.get("hessian"),
            backend=str(arrays["backend"]) if "backend" in arrays else backend,
            dtype=str(arrays["dtype"]) if "dtype" in arrays else dtype,
            device=str(arrays["device"]), elapsed_ms=float(arrays["elapsed_ms"]))


class GradientAPI:
    """The ``gradient`` method of :class:`labcrunch.Client` and :class:`labcrunch.AsyncClient`."""

    @endpoint
    def gradient(
        self,
        expression: str | None = None,
        *,
        program: str | None = None,
        function: str | None = None,
        at: Mapping[str, ArrayLike] | None = None,
        order: int = 1,
        backend: Backend = "jax",
        dtype: DType = "float64",
        binary: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[GradientResult]:
        """Value, gradient and (``order=2``) Hessian of an expression or program
        (``POST /v1/gradient``).

        The maths is text in the service's language (``sin(x) * y**2``; programs are Python-like
        ``def`` functions); it is parsed and compiled on the server, never evaluated as Python.

        Example:
            >>> r = lc.gradient("(x - 1)**2 * y", at={"x": 3.0, "y": 2.0}, order=2)
            >>> r.variables, float(r.value), float(r.gradient["x"]), float(r.gradient["y"])
            (('x', 'y'), 8.0, 8.0, 4.0)
            >>> r.hessian
            array([[4., 4.],
                   [4., 0.]])
            >>> batch = lc.gradient("log(x)", at={"x": [1.0, 2.0, 4.0]})
            >>> batch.gradient["x"]
            array([1.  , 0.5 , 0.25])

        Args:
            expression: An expression of the free variables (or give ``program``).
            program: Source with one or more ``def``; differentiate the one named ``function``.
            function: The ``def`` of ``program`` to differentiate.
            at: Each free variable's value: a number, or a 1-D array (a batch; numbers broadcast
                against it). Non-finite values are allowed.
            order: 1 for value and gradient, 2 to add the Hessian.
            backend: ``"jax"`` or ``"tensorflow"``.
            dtype: ``"float64"`` or ``"float32"``.
            binary: Send and receive .npz instead of JSON. By default batches of at least
                ``BINARY_THRESHOLD`` (10,000) points travel as .npz.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            GradientResult: value, gradient (by variable) and Hessian as numpy arrays.

        Raises:
            ValidationError: Unknown or missing variables, text the language refuses (422).
            RequestTooLargeError: A batch, text or result over a server limit (413).
            InternalServerError: The backend is missing on the server (503) or another 5xx.
        """
        options: dict[str, Any] = {"expression": expression, "program": program, "function": function,
                                   "order": order, "backend": backend, "dtype": dtype}
        options = {k: v for k, v in options.items() if v is not None}
        columns = {k: np.asarray(v, dtype=np.float64) for k, v in (at or {}).items()}
        size = max((c.size for c in columns.values()), default=0)
        if _arrays.binary_wanted(binary, size):
            def from_npz(response: httpx.Response) -> GradientResult:
                return GradientResult.from_npz(_arrays.from_npz(response.content), backend=backend,
                                               dtype=dtype)

            return Call("POST", "/v1/gradient", from_npz, content=_arrays.to_npz(columns),
                        params=options, timeout=timeout, max_retries=max_retries,
                        headers={"Content-Type": _arrays.NPZ_MEDIA_TYPE,
                                 "Accept": _arrays.NPZ_MEDIA_TYPE})
        body = {**options, "at": {k: _arrays.json_numbers(c) for k, c in columns.items()}}
        return Call("POST", "/v1/gradient", json_answer(GradientResult.from_json), json=body,
                    timeout=timeout, max_retries=max_retries)
