"""Line fits: ``Client.fit_line`` (``POST /v1/fit/line``) and its result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
from numpy.typing import ArrayLike

from labcrunch._arrays import NPY_MEDIA_TYPE, array, binary_wanted, json_numbers, number, to_npy
from labcrunch._base import Call, endpoint
from labcrunch._repr import ShortRepr
from labcrunch._types import Backend

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Closed-form weighted least squares, or minibatch gradient descent.
FitMethod = Literal["least_squares", "gradient_descent"]

#: The optimisers of a gradient-descent line fit (optax on JAX, Keras on TensorFlow).
FitOptimizer = Literal["sgd", "adam"]


@dataclass(frozen=True, repr=False)
class LineFitResult(ShortRepr):
    """A fitted line y = m·x + q with its uncertainties, and the data it was fitted to.

    Attributes:
        m, q: Slope and intercept.
        uncertainty: ``{"m": σ_m, "q": σ_q}``, square roots of the covariance diagonal.
        covariance: Covariance of (m, q), shape (2, 2).
        covariance_scaled: True when no σ was given (the covariance is scaled by χ²/ndf).
        correlation: Correlation of (m, q), shape (2, 2).
        chi2, ndf: χ² of the fit and N − 2.
        method, backend, device, elapsed_ms: How, where and how fast it was computed.
        diverged: Gradient descent ended on non-finite values.
        history: Gradient descent only: ``loss``, ``m`` and ``q`` per epoch.
        x, y, sigma: The data (None when parsed from an answer alone).
    """

    m: float
    q: float
    uncertainty: dict[str, float]
    covariance: np.ndarray
    covariance_scaled: bool
    correlation: np.ndarray
    chi2: float
    ndf: int
    method: str
    backend: str
    device: str
    elapsed_ms: float
    diverged: bool
    history: dict[str, np.ndarray] | None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    sigma: np.ndarray | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, x: ArrayLike | None = None,
                  y: ArrayLike | None = None, sigma: ArrayLike | None = None) -> LineFitResult:
        """The result from the server's JSON answer; ``x``, ``y`` and ``sigma`` (which the answer
        does not repeat) are kept for :meth:`plot`."""
        history = body.get("history")
        return cls(
            m=number(body["m"]), q=number(body["q"]),
            uncertainty={k: number(v) for k, v in body["uncertainty"].items()},
            covariance=array(body["covariance"]), covariance_scaled=bool(body["covariance_scaled"]),
            correlation=array(body["correlation"]), chi2=number(body["chi2"]), ndf=int(body["ndf"]),
            method=body["method"], backend=body["backend"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]), diverged=bool(body["diverged"]),
            history=None if history is None else {k: array(v) for k, v in history.items()},
            x=None if x is None else array(x), y=None if y is None else array(y),
            sigma=None if sigma is None else array(sigma),
        )

    def predict(self, x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The line at ``x`` and its 1σ uncertainty √(J C Jᵀ), J = [x, 1]."""
        x = np.asarray(x, dtype=np.float64)
        c = self.covariance
        variance = c[0, 0] * x * x + 2 * c[0, 1] * x + c[1, 1]
        return self.m * x + self.q, np.sqrt(np.maximum(variance, 0.0))

    def plot(self, ax: Axes | None = None, *, max_points: int = 5_000,
             path: str | Path | None = None) -> Axes:
        """Data, fitted line and its 1σ band (see :func:`labcrunch.plot.line_fit`), saved to
        ``path`` when given; returns the Axes. Needs matplotlib."""
        from labcrunch import plot

        return plot.line_fit(self, ax, max_points=max_points, path=path)

    def plot_loss(self, ax: Axes | None = None, *, path: str | Path | None = None) -> Axes:
        """Gradient descent's loss per epoch (see :func:`labcrunch.plot.line_fit_loss`), saved
        to ``path`` when given; returns the Axes. Needs matplotlib."""
        from labcrunch import plot

        return plot.line_fit_loss(self, ax, path=path)


def _column(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; it has shape {arr.shape}")
    return arr


class FitAPI:
    """The ``fit_line`` method of :class:`labcrunch.Client` and :class:`labcrunch.AsyncClient`."""

    @endpoint
    def fit_line(
        self,
        x: ArrayLike,
        y: ArrayLike,
        sigma: ArrayLike | None = None,
        method: FitMethod = "least_squares",
        *,
        backend: Backend | None = None,
        optimizer: FitOptimizer | None = None,
        learning_rate: float | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        initial: tuple[float, float] | None = None,
        shuffle: bool | None = None,
        seed: int | None = None,
        standardize: bool | None = None,
        binary: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[LineFitResult]:
        """Fit the line y = m·x + q to points, with σ per point or without (``POST /v1/fit/line``).

        Least squares is exact (numpy, float64); gradient descent runs minibatches on JAX (optax)
        or TensorFlow (Keras), as in the seed notebook. Options left None take the server's
        defaults.

        Example:
            >>> fit = lc.fit_line([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0])
            >>> round(fit.m, 12), round(fit.q, 12), fit.ndf
            (2.0, 1.0, 2)
            >>> slow = lc.fit_line([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0],
            ...                    method="gradient_descent")
            >>> len(slow.history["loss"])  # the server's default: 20 epochs
            20

        Args:
            x: Abscissae (1-D).
            y: Ordinates, as many as ``x``.
            sigma: Per-point uncertainties σ > 0 (absolute), or None for an unweighted fit.
            method: ``"least_squares"`` or ``"gradient_descent"``.
            backend: Where gradient descent runs: ``"jax"`` or ``"tensorflow"``.
            optimizer: Gradient descent's optimiser: ``"sgd"`` or ``"adam"``.
            learning_rate: Gradient descent's step size.
            epochs: Passes over the data.
            batch_size: Points per minibatch.
            initial: The start point ``(m, q)``.
            shuffle: A fresh permutation of the points each epoch.
            seed: Seed of the permutations.
            standardize: Fit in standardized x and map m, q back.
            binary: Send the points as one .npy body instead of JSON. By default sets of at
                least ``BINARY_THRESHOLD`` (10,000) points do.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            LineFitResult: m, q, covariance, χ², the loss history of gradient descent, and the data.

        Raises:
            ValueError: ``x``, ``y`` or ``sigma`` is not one-dimensional, or (binary) they differ
                in length.
            ValidationError: Non-finite or mismatched data, σ ≤ 0, bad options (422).
            RequestTooLargeError: Points, epochs or batches over a server limit (413).
        """
        xs, ys = _column(x, "x"), _column(y, "y")
        sig = None if sigma is None else _column(sigma, "sigma")
        descent: dict[str, Any] = {"optimizer": optimizer, "learning_rate": learning_rate, "epochs": epochs,
                   "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
                   "standardize": standardize}
        descent = {k: v for k, v in descent.items() if v is not None}
        options: dict[str, Any] = {"method": method}
        if backend is not None:
            options["backend"] = backend

        def parse(response: httpx.Response) -> LineFitResult:
            return LineFitResult.from_json(response.json(), x=xs, y=ys, sigma=sig)

        if binary_wanted(binary, len(xs)):
            if len(xs) != len(ys) or (sig is not None and len(sig) != len(xs)):
                raise ValueError("x, y (and sigma) must be equally long to travel as one .npy table")
            table = np.column_stack([xs, ys] if sig is None else [xs, ys, sig])
            params = options | descent  # the query string flattens the descent options
            if initial is not None:
                params |= {"initial_m": float(initial[0]), "initial_q": float(initial[1])}
            return Call("POST", "/v1/fit/line", parse, content=to_npy(table), params=params,
                        headers={"Content-Type": NPY_MEDIA_TYPE}, timeout=timeout,
                        max_retries=max_retries)
        if initial is not None:
            descent["initial"] = {"m": float(initial[0]), "q": float(initial[1])}
        body = options | {"x": json_numbers(xs), "y": json_numbers(ys)}
        if sig is not None:
            body["sigma"] = json_numbers(sig)
        if descent:
            body["gradient_descent"] = descent
        return Call("POST", "/v1/fit/line", parse, json=body, timeout=timeout, max_retries=max_retries)
