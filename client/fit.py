"""Client methods and result types for the fit endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from labcrunch._arrays import NPY_MEDIA_TYPE, array, json_numbers, number, to_npy
from labcrunch._base import Call

# Above this many points the data travel as one .npy body instead of JSON lists.
BINARY_THRESHOLD = 10_000


@dataclass(frozen=True)
class LineFitResult:
    """A fitted line y = m·x + q with its uncertainties (and the data it was fitted to)."""

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
    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None

    @classmethod
    def from_json(cls, body: dict[str, Any], x: np.ndarray, y: np.ndarray,
                  sigma: np.ndarray | None) -> LineFitResult:
        history = body.get("history")
        return cls(
            m=number(body["m"]), q=number(body["q"]),
            uncertainty={k: number(v) for k, v in body["uncertainty"].items()},
            covariance=array(body["covariance"]), covariance_scaled=bool(body["covariance_scaled"]),
            correlation=array(body["correlation"]), chi2=number(body["chi2"]), ndf=int(body["ndf"]),
            method=body["method"], backend=body["backend"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]), diverged=bool(body["diverged"]),
            history=None if history is None else {k: array(v) for k, v in history.items()},
            x=x, y=y, sigma=sigma,
        )

    def predict(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """The line at ``x`` and its 1σ uncertainty √(JCJᵀ), J = [x, 1]."""
        x = np.asarray(x, dtype=np.float64)
        c = self.covariance
        variance = c[0, 0] * x * x + 2 * c[0, 1] * x + c[1, 1]
        return self.m * x + self.q, np.sqrt(np.maximum(variance, 0.0))

    def plot(self, axes: Any = None, *, max_points: int = 5_000) -> Any:
        """Data, fitted line with its 1σ band, and (gradient descent) the loss per epoch.

        Needs matplotlib. ``axes``: one Axes, or two for gradient descent (line, loss); when
        omitted a new figure is made. At most ``max_points`` data points are drawn (evenly
        subsampled). Returns the figure.
        """
        import matplotlib.pyplot as plt  # lazy: plotting is optional for the client

        with_loss = self.history is not None
        made_figure = axes is None
        if made_figure:
            fig, axes = plt.subplots(1, 2 if with_loss else 1, figsize=(11 if with_loss else 6, 4),
                                     squeeze=False)
            axes = list(axes[0])
        else:
            axes = list(np.atleast_1d(axes))
        ax = axes[0]
        step = max(1, len(self.x) // max_points)
        xs, ys = self.x[::step], self.y[::step]
        if self.sigma is not None:
            ax.errorbar(xs, ys, yerr=self.sigma[::step], fmt=".", ms=2, alpha=0.5, label="data")
        else:
            ax.plot(xs, ys, ".", ms=2, alpha=0.5, label="data")
        grid = np.linspace(self.x.min(), self.x.max(), 200)
        line, band = self.predict(grid)
        ax.plot(grid, line, color="C1",
                label=f"m = {self.m:.4g} ± {self.uncertainty['m']:.2g}, "
                      f"q = {self.q:.4g} ± {self.uncertainty['q']:.2g}")
        ax.fill_between(grid, line - band, line + band, color="C1", alpha=0.3, label="1σ band")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"{self.method} ({self.backend})")
        ax.legend(fontsize="small")
        if with_loss and len(axes) > 1:
            loss_ax = axes[1]
            epochs = np.arange(1, len(self.history["loss"]) + 1)
            loss_ax.plot(epochs, self.history["loss"], "o-")
            loss_ax.set_yscale("log")
            loss_ax.set_xlabel("epoch")
            loss_ax.set_ylabel("loss")
            loss_ax.set_title("mean minibatch loss per epoch")
        if made_figure:
            ax.figure.tight_layout()
        return ax.figure


def _column(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; it has shape {arr.shape}")
    return arr


class FitAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""

    def fit_line(
        self,
        x: Any,
        y: Any,
        sigma: Any = None,
        method: str = "least_squares",
        *,
        backend: str | None = None,
        optimizer: str | None = None,
        learning_rate: float | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        init: tuple[float, float] | None = None,
        shuffle: bool | None = None,
        seed: int | None = None,
        standardize: bool | None = None,
        binary: bool | None = None,
    ) -> Any:
        """``POST /v1/fit/line``: fit y = m·x + q; returns a :class:`LineFitResult`.

        ``method``: ``"least_squares"`` (exact) or ``"gradient_descent"``, whose options
        (``optimizer``, ``learning_rate``, ``epochs``, ``batch_size``, ``init=(m, q)``,
        ``shuffle``, ``seed``, ``standardize``) default on the server when left None;
        ``backend``: ``"jax"`` or ``"tensorflow"``. The points travel as a .npy body when
        ``binary`` is true, or when left None and there are more than 10,000 of them.
        """
        xs, ys = _column(x, "x"), _column(y, "y")
        sig = None if sigma is None else _column(sigma, "sigma")
        gd = {"optimizer": optimizer, "learning_rate": learning_rate, "epochs": epochs,
              "batch_size": batch_size, "shuffle": shuffle, "seed": seed, "standardize": standardize}
        gd = {k: v for k, v in gd.items() if v is not None}
        options: dict[str, Any] = {"method": method}
        if backend is not None:
            options["backend"] = backend
        if binary is None:
            binary = len(xs) > BINARY_THRESHOLD

        def parse(response: httpx.Response) -> LineFitResult:
            return LineFitResult.from_json(response.json(), xs, ys, sig)

        if binary:
            if len(xs) != len(ys) or (sig is not None and len(sig) != len(xs)):
                raise ValueError("x, y (and sigma) must be equally long to travel as one .npy table")
            table = np.column_stack([xs, ys] if sig is None else [xs, ys, sig])
            params = options | gd
            if init is not None:
                params |= {"init_m": float(init[0]), "init_q": float(init[1])}
            return self._send(Call("POST", "/v1/fit/line", content=to_npy(table), params=params,
                                   headers={"Content-Type": NPY_MEDIA_TYPE}, parse=parse))
        if init is not None:
            gd["init"] = {"m": float(init[0]), "q": float(init[1])}
        body = options | {"x": json_numbers(xs), "y": json_numbers(ys)}
        if sig is not None:
            body["sigma"] = json_numbers(sig)
        if gd:
            body["gd"] = gd
        return self._send(Call("POST", "/v1/fit/line", json=body, parse=parse))
