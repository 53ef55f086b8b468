"""Figures of results, drawn with matplotlib (an optional dependency: ``pip install
'labcrunch[plot]'``).

Each function draws on ``ax`` (a new figure's Axes when omitted) and returns the Axes; the result
types' ``.plot()`` methods call these. matplotlib is imported when a figure is drawn, never when
``labcrunch`` is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labcrunch._constants import PLOT_INSTALL_HINT

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.patches import Ellipse as EllipsePatch

    from labcrunch.fit import LineFitResult
    from labcrunch.minimize import MinimizeResult, MinimizeRun
    from labcrunch.nn import DenseTraining
    from labcrunch.pyhf import Ellipse, PyhfFitResult, PyhfScanResult, UpperLimitResult


def _pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"Plotting needs matplotlib ({exc}); install it with: {PLOT_INSTALL_HINT}"
                          ) from exc
    return plt


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    plt = _pyplot()
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=figsize, layout="constrained")
    axes: Axes = new
    return axes


def save(ax: Axes, path: str | Path | None, *, dpi: int = 150) -> Axes:
    """Writes the figure of ``ax`` to ``path`` when one is given (the format follows the suffix:
    .png, .pdf, .svg, ...); returns ``ax``. In a script, this is how a plot is seen."""
    figure = ax.get_figure(root=True)  # the whole figure, subfigures too
    if path is not None and figure is not None:
        figure.savefig(Path(path), dpi=dpi)
    return ax


# --- minimize -------------------------------------------------------------------------------

def minimize_paths(result: MinimizeResult, ax: Axes | None = None, *,
                   path: str | Path | None = None) -> Axes:
    """The seed notebook's figure: the function and each run's path, one colour per run, its
    start marked by a white circle and its end by a square.

    One variable: the function as a grey curve and each run as dots joined by lines (variable,
    value). Two variables: contours of the function and each run's path in the plane. The
    function is drawn when the result carries its ``landscape``.

    Args:
        result: A minimisation of one or two variables.
        ax: The Axes to draw on (default: a new figure's).
        path: Also save the figure there (see :func:`save`).

    Returns:
        The Axes drawn on.

    Raises:
        ValueError: More than two variables.
        ImportError: matplotlib is not installed.
    """
    if len(result.variables) > 2:
        raise ValueError(f"A minimisation plot draws one or two variables; this one has "
                         f"{len(result.variables)} ({', '.join(result.variables)}).")
    ax = _axes(ax, (8, 7))
    grid = result.landscape
    if len(result.variables) == 1:
        (name,) = result.variables
        if grid is not None:
            ax.plot(grid.x[name], grid.value, color="0.7")
        for run in result.runs:
            line, = ax.plot(run.history.x[name], run.history.value, ".-", label=_run_label(result, run))
            _ends(ax, run.history.x[name], run.history.value, line.get_color())
        ax.set_xlabel(name)
        ax.set_ylabel(f"f({name})")
    else:
        first, second = result.variables
        if grid is not None:
            value = np.ma.masked_invalid(grid.value)
            contours = ax.contour(grid.x[first], grid.x[second], value,
                                  levels=_contour_levels(value), colors="0.6", linewidths=0.7)
            ax.clabel(contours, fontsize="x-small", fmt="%.3g")
        for run in result.runs:
            line, = ax.plot(run.history.x[first], run.history.x[second], ".-", ms=3,
                            label=_run_label(result, run))
            _ends(ax, run.history.x[first], run.history.x[second], line.get_color())
        ax.set_xlabel(first)
        ax.set_ylabel(second)
    ax.set_title(f"{result.optimizer}: {result.expression or 'f'}"
                 f" ({'contours of f, ' if len(result.variables) == 2 and grid is not None else ''}"
                 f"○ start, ■ end)")
    title = "learning rate" if result.runs and result.runs[0].learning_rate is not None else None
    ax.legend(title=title, loc=0)
    return save(ax, path)


def _ends(ax: Axes, xs: np.ndarray, ys: np.ndarray, color: Any) -> None:
    """Marks where a path starts (white circle) and ends (filled square)."""
    finite = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    if finite.size:
        first, last = finite[0], finite[-1]
        ax.plot(xs[first], ys[first], "o", ms=8, mfc="white", mec=color, mew=2, zorder=4)
        ax.plot(xs[last], ys[last], "s", ms=7, color=color, mec="black", zorder=4)


def _run_label(result: MinimizeResult, run: MinimizeRun) -> str:
    label = result.optimizer if run.learning_rate is None else f"{run.learning_rate:g}"
    return label + " (diverged)" if run.diverged else label


def _contour_levels(value: np.ma.MaskedArray, count: int = 20) -> Any:
    """Log-spaced levels for a positive function spanning decades (a narrow valley such as
    Rosenbrock's stays visible); otherwise ``count`` evenly spaced ones."""
    low, high = value.min(), value.max()
    if low is np.ma.masked or not (0 < low and high > 100 * low):
        return count
    return np.geomspace(low, high, count)


# --- fit ------------------------------------------------------------------------------------

def line_fit(result: LineFitResult, ax: Axes | None = None, *, max_points: int = 5_000,
             path: str | Path | None = None) -> Axes:
    """The data (with error bars when σ was given), the fitted line and its 1σ band.

    Args:
        result: A line fit that carries its data (as ``Client.fit_line`` returns it).
        ax: The Axes to draw on (default: a new figure's).
        max_points: At most this many data points are drawn (evenly subsampled).
        path: Also save the figure there (see :func:`save`).

    Returns:
        The Axes drawn on.

    Raises:
        ValueError: The result carries no data (``x``, ``y``).
        ImportError: matplotlib is not installed.
    """
    if result.x is None or result.y is None:
        raise ValueError("This fit result carries no data to draw: give x and y to from_json().")
    ax = _axes(ax, (6, 4))
    step = max(1, len(result.x) // max_points)
    xs, ys = result.x[::step], result.y[::step]
    if result.sigma is not None:
        ax.errorbar(xs, ys, yerr=result.sigma[::step], fmt=".", ms=2, alpha=0.5, label="data")
    else:
        ax.plot(xs, ys, ".", ms=2, alpha=0.5, label="data")
    grid = np.linspace(result.x.min(), result.x.max(), 200)
    line, band = result.predict(grid)
    ax.plot(grid, line, color="C1",
            label=f"m = {result.m:.4g} ± {result.uncertainty['m']:.2g}, "
                  f"q = {result.q:.4g} ± {result.uncertainty['q']:.2g}")
    ax.fill_between(grid, line - band, line + band, color="C1", alpha=0.3, label="1σ band")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    shown = "" if step == 1 else f", every {step}th of {len(result.x):,} points drawn"
    ax.set_title(f"y = m·x + q, {result.method.replace('_', ' ')} ({result.backend}{shown})")
    ax.legend(fontsize="small")
    return save(ax, path)


def line_fit_loss(result: LineFitResult, ax: Axes | None = None, *,
                  path: str | Path | None = None) -> Axes:
    """A gradient-descent fit's mean minibatch loss per epoch, on a log scale (saved to ``path``
    when given).

    Raises:
        ValueError: The fit has no loss history (least squares).
        ImportError: matplotlib is not installed.
    """
    if result.history is None:
        raise ValueError(f"A {result.method} fit has no loss history; gradient_descent fits do.")
    ax = _axes(ax, (5, 4))
    loss = result.history["loss"]
    ax.plot(np.arange(1, len(loss) + 1), loss, "o-")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean squared error)")
    ax.set_title(f"mean minibatch loss per epoch ({result.backend})")
    return save(ax, path)


# --- nn -------------------------------------------------------------------------------------

def training_history(result: DenseTraining, ax: Axes | None = None, *, metric: str = "loss") -> Axes:
    """A network training's ``metric`` per epoch (as Keras' History records it), and its
    validation curve when there is one; a log scale for a positive loss.

    Args:
        result: A training (``Client.dense_train``, ``DenseNetwork.train``).
        ax: The Axes to draw on (default: a new figure's).
        metric: ``"loss"`` or a metric the training recorded (``"accuracy"``, ...).

    Returns:
        The Axes drawn on.

    Raises:
        ValueError: The training did not record ``metric``.
        ImportError: matplotlib is not installed.
    """
    if metric not in result.history:
        raise ValueError(f"This training recorded {sorted(result.history)}, not {metric!r}.")
    ax = _axes(ax, (6, 4))
    for name, style in ((metric, "o-"), (f"val_{metric}", "s--")):
        if name in result.history:
            values = result.history[name]
            ax.plot(np.arange(1, len(values) + 1), values, style, ms=3,
                    label="validation" if name.startswith("val_") else "training")
    values = np.concatenate([result.history[n] for n in (metric, f"val_{metric}")
                             if n in result.history])
    if metric == "loss" and values.size and np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(result.loss if metric == "loss" else metric)
    ax.set_title(f"{result.optimizer}, learning rate {result.learning_rate:g} ({result.backend})")
    ax.legend()
    return ax


# --- pyhf -----------------------------------------------------------------------------------

def ellipse_patch(ellipse: Ellipse, **kwargs: Any) -> EllipsePatch:
    """A matplotlib ``Ellipse`` patch of a confidence ellipse (unfilled unless ``fill=True``);
    ``kwargs`` go to the patch (``edgecolor``, ``lw``, ...)."""
    _pyplot()
    from matplotlib.patches import Ellipse as EllipsePatch

    kwargs.setdefault("fill", False)
    return EllipsePatch(ellipse.center, 2 * ellipse.semi_axes[0], 2 * ellipse.semi_axes[1],
                        angle=ellipse.angle_deg, **kwargs)


def likelihood_scan(scan: PyhfScanResult, ax: Axes | None = None, *,
                    fit: PyhfFitResult | None = None, arrow_scale: float | None = None,
                    path: str | Path | None = None) -> Axes:
    """The seed notebook's figure: a colour map of the scanned quantity, its gradient as arrows
    and, with ``fit``, the best fit and the fit's ellipses of this parameter pair, each labelled
    with its confidence level.

    Args:
        scan: A two-parameter scan.
        ax: The Axes to draw on (default: a new figure's).
        fit: A fit of the same model whose best fit and ellipses are drawn on top.
        arrow_scale: matplotlib ``quiver``'s ``scale`` (default: automatic).
        path: Also save the figure there (see :func:`save`).

    Returns:
        The Axes drawn on.
    """
    ax = _axes(ax, (7, 6))
    mesh = ax.pcolormesh(scan.x, scan.y, scan.values, shading="auto")
    ax.figure.colorbar(mesh, ax=ax, label=QUANTITY_LABELS.get(scan.quantity, scan.quantity))
    gx, gy = np.meshgrid(scan.gradient_x, scan.gradient_y)
    ax.quiver(gx, gy, scan.d_dx, scan.d_dy, angles="xy", scale=arrow_scale, color="w")
    if fit is not None:
        ix, iy = (fit.parameters.index(p) for p in scan.parameters)
        ax.scatter(fit.bestfit[ix], fit.bestfit[iy], c="r", zorder=3, label="best fit")
        pair = sorted((e for e in fit.ellipses if e.parameters == scan.parameters),
                      key=lambda e: e.confidence_level)
        for ellipse, style in zip(pair, _ELLIPSE_STYLES * len(pair), strict=False):
            ax.add_patch(ellipse_patch(ellipse, label=_level_label(ellipse), lw=2, **style))
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel(scan.parameters[0])
    ax.set_ylabel(scan.parameters[1])
    ax.set_xlim(scan.x[0], scan.x[-1])
    ax.set_ylim(scan.y[0], scan.y[-1])
    held = "profiled" if scan.profiled else "at the best fit" if scan.center == "bestfit" else "as given"
    ax.set_title(f"likelihood scan, other parameters {held}")
    return save(ax, path)


QUANTITY_LABELS = {"logpdf": "ln L", "twice_nll": "−2 ln L"}
_ELLIPSE_STYLES = ({"edgecolor": "black"}, {"edgecolor": "black", "linestyle": "--"},
                   {"edgecolor": "0.4", "linestyle": ":"})


def _level_label(ellipse: Ellipse) -> str:
    """"1σ (68.27 %, joint)" for the usual levels, else the percentage."""
    percent = 100 * ellipse.confidence_level
    sigmas = {68.27: "1σ ", 95.45: "2σ ", 99.73: "3σ "}.get(round(percent, 2), "")
    return f"{sigmas}({percent:.4g} %, {ellipse.region}, Δχ² = {ellipse.delta_chi2:.3g})"


def correlation_matrix(fit: PyhfFitResult, ax: Axes | None = None, *,
                       path: str | Path | None = None) -> Axes:
    """The correlation matrix of a fit's free parameters as a labelled colour map (with the
    values written in for up to 12 parameters), saved to ``path`` when given. Returns the Axes
    drawn on."""
    n = len(fit.free_parameters)
    ax = _axes(ax, (2.5 + 0.6 * n, 2 + 0.6 * n))
    image = ax.imshow(fit.correlation, vmin=-1, vmax=1, cmap="RdBu_r")
    ticks = range(n)
    ax.set_xticks(ticks, fit.free_parameters, rotation=60, ha="right")
    ax.set_yticks(ticks, fit.free_parameters)
    if n <= 12:
        for (i, j), c in np.ndenumerate(fit.correlation):
            ax.text(j, i, f"{c:.2f}", ha="center", va="center", fontsize="small")
    ax.figure.colorbar(image, ax=ax, label="correlation")
    ax.set_title("correlation of the free parameters")
    return save(ax, path)


def upper_limit(limit: UpperLimitResult, ax: Axes | None = None, *,
                path: str | Path | None = None) -> Axes:
    """Observed CLs over the scan, the expected ±1σ and ±2σ bands and the CLs level line, saved
    to ``path`` when given. Returns the Axes drawn on."""
    ax = _axes(ax, (7, 4.5))
    band = limit.cls_expected
    ax.fill_between(limit.scan, band[:, 0], band[:, 4], color="yellow", label="expected ±2σ")
    ax.fill_between(limit.scan, band[:, 1], band[:, 3], color="limegreen", label="expected ±1σ")
    ax.plot(limit.scan, band[:, 2], "k--", label="expected")
    def shown(value: float | None) -> str:  # a limit outside the scan is None (observed) or NaN
        return "outside the scan" if value is None or np.isnan(value) else f"{value:.3g}"

    found = shown(limit.observed)
    ax.plot(limit.scan, limit.cls, "k-o", ms=3, label=f"observed (limit {found})")
    ax.axhline(limit.level, color="r", label=f"CLs = {limit.level:g}")
    ax.set_xlabel(limit.poi)
    ax.set_ylabel("CLs")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"upper limit on {limit.poi} at {100 * (1 - limit.level):g} % CL: observed "
                 f"{found}, expected {shown(float(limit.expected[2]))}")
    ax.legend(fontsize="small")
    return save(ax, path)
