"""Client methods and result types for the pyhf endpoints (/v1/pyhf).

A model is sent as the server expects it: ``simple_model(...)`` or ``workspace_model(...)`` build
that dict (or pass one by hand). Results carry numpy arrays; ``plot()`` helpers draw the seed
notebook's figure (likelihood colour map, gradient arrows, best fit, ellipses), a correlation
matrix, and CLs scans (matplotlib is imported only when plotting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from labcrunch._arrays import NPZ_MEDIA_TYPE, array, from_npz, number
from labcrunch._base import Call

# Scans with more grid points than this come back as one .npz body instead of JSON lists.
BINARY_THRESHOLD = 10_000


def simple_model(signal: Sequence[float], bkg: Sequence[float], bkg_uncertainty: Sequence[float] | None = None,
                 *, bkg_up: Sequence[float] | None = None, bkg_down: Sequence[float] | None = None) -> dict:
    """pyhf's ``uncorrelated_background`` (with ``bkg_uncertainty``) or ``correlated_background``
    (with ``bkg_up`` and ``bkg_down``)."""
    if bkg_uncertainty is not None:
        spec = {"kind": "uncorrelated_background", "bkg_uncertainty": list(map(float, bkg_uncertainty))}
    elif bkg_up is not None and bkg_down is not None:
        spec = {"kind": "correlated_background", "bkg_up": list(map(float, bkg_up)),
                "bkg_down": list(map(float, bkg_down))}
    else:
        raise ValueError("give bkg_uncertainty, or both bkg_up and bkg_down")
    return {"simple": {**spec, "signal": list(map(float, signal)), "bkg": list(map(float, bkg))}}


def workspace_model(workspace: dict, measurement: str | None = None, patches: Sequence[Any] | None = None) -> dict:
    """A pyhf JSON workspace (a dict), optionally a measurement name and JSON patches."""
    model: dict[str, Any] = {"workspace": workspace}
    if measurement is not None:
        model["measurement"] = measurement
    if patches is not None:
        model["patches"] = list(patches)
    return model


@dataclass(frozen=True)
class Ellipse:
    parameters: tuple[str, str]
    centre: tuple[float, float]
    semi_axes: tuple[float, float]  # (major, minor)
    angle_deg: float  # major axis from the x axis, anticlockwise
    confidence_level: float
    delta_chi2: float
    region: str  # "joint" (both parameters together) or "projection" (1-D intervals)

    def patch(self, **kwargs: Any) -> Any:
        """A matplotlib Ellipse patch (width and height are full axes)."""
        from matplotlib.patches import Ellipse as EllipsePatch

        kwargs.setdefault("fill", False)
        return EllipsePatch(self.centre, 2 * self.semi_axes[0], 2 * self.semi_axes[1], angle=self.angle_deg,
                            **kwargs)


@dataclass(frozen=True)
class PyhfFitResult:
    parameters: list[str]
    poi: str | None
    bestfit: np.ndarray
    twice_nll: float
    free_parameters: list[str]
    fixed: list[str]
    hessian: np.ndarray  # of −2 ln L, over the free parameters
    covariance: np.ndarray  # = 2·inv(hessian), over the free parameters
    correlation: np.ndarray
    uncertainties: np.ndarray  # one per parameter, 0 for fixed ones
    converged: bool
    optimizer: str
    ellipses: list[Ellipse]
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PyhfFitResult:
        return cls(
            parameters=list(body["parameters"]), poi=body["poi"], bestfit=array(body["bestfit"]),
            twice_nll=number(body["twice_nll"]), free_parameters=list(body["free_parameters"]),
            fixed=list(body["fixed"]), hessian=array(body["hessian"]), covariance=array(body["covariance"]),
            correlation=array(body["correlation"]), uncertainties=array(body["uncertainties"]),
            converged=bool(body["converged"]), optimizer=body["optimizer"],
            ellipses=[Ellipse(tuple(e["parameters"]), tuple(e["centre"]), tuple(e["semi_axes"]), e["angle_deg"],
                              e["confidence_level"], e["delta_chi2"], e["region"]) for e in body["ellipses"]],
            warnings=list(body["warnings"]), backend=body["backend"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]),
        )

    def value(self, name: str) -> tuple[float, float]:
        """(best fit, uncertainty) of one parameter."""
        i = self.parameters.index(name)
        return float(self.bestfit[i]), float(self.uncertainties[i])

    def plot_correlation(self, ax: Any = None) -> Any:
        """The correlation matrix of the free parameters as a labelled colour map; returns the figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            n = len(self.free_parameters)
            _, ax = plt.subplots(figsize=(2.5 + 0.6 * n, 2 + 0.6 * n), layout="constrained")
        image = ax.imshow(self.correlation, vmin=-1, vmax=1, cmap="RdBu_r")
        ticks = range(len(self.free_parameters))
        ax.set_xticks(ticks, self.free_parameters, rotation=60, ha="right")
        ax.set_yticks(ticks, self.free_parameters)
        if len(self.free_parameters) <= 12:
            for (i, j), c in np.ndenumerate(self.correlation):
                ax.text(j, i, f"{c:.2f}", ha="center", va="center", fontsize="small")
        ax.figure.colorbar(image, ax=ax, label="correlation")
        return ax.figure


@dataclass(frozen=True)
class PyhfScanResult:
    parameters: tuple[str, str]
    quantity: str  # "logpdf" or "twice_nll"
    x: np.ndarray
    y: np.ndarray
    values: np.ndarray  # (len(y), len(x)): values[j, i] at (x[i], y[j])
    gradient_x: np.ndarray
    gradient_y: np.ndarray
    d_dx: np.ndarray  # (len(gradient_y), len(gradient_x))
    d_dy: np.ndarray
    profiled: bool
    base_parameters: list[str]
    base: np.ndarray
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_npz(cls, arrays: dict[str, np.ndarray]) -> PyhfScanResult:
        """From the server's .npz answer: the JSON fields as arrays, ``gradient`` flattened."""
        body = {k: v.tolist() if v.dtype.kind in "U" else v for k, v in arrays.items()}
        body["gradient"] = {"d_dx": arrays["d_dx"], "d_dy": arrays["d_dy"]}
        body["profiled"], body["elapsed_ms"] = bool(arrays["profiled"]), float(arrays["elapsed_ms"])
        return cls.from_json(body)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PyhfScanResult:
        return cls(
            parameters=tuple(body["parameters"]), quantity=body["quantity"], x=array(body["x"]), y=array(body["y"]),
            values=array(body["values"]), gradient_x=array(body["gradient_x"]),
            gradient_y=array(body["gradient_y"]), d_dx=array(body["gradient"]["d_dx"]),
            d_dy=array(body["gradient"]["d_dy"]), profiled=bool(body["profiled"]),
            base_parameters=list(body["base_parameters"]), base=array(body["base"]),
            warnings=list(body["warnings"]), backend=body["backend"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]),
        )

    def plot(self, ax: Any = None, *, fit: PyhfFitResult | None = None, arrow_scale: float | None = None) -> Any:
        """The seed's figure: colour map of the scanned quantity, its gradient as arrows, and —
        with ``fit`` — the best fit and its ellipses for this pair. Returns the figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 6))
        mesh = ax.pcolormesh(self.x, self.y, self.values, shading="auto")
        ax.figure.colorbar(mesh, ax=ax, label=self.quantity)
        gx, gy = np.meshgrid(self.gradient_x, self.gradient_y)
        ax.quiver(gx, gy, self.d_dx, self.d_dy, angles="xy", scale=arrow_scale, color="w")
        if fit is not None:
            ix, iy = (fit.parameters.index(p) for p in self.parameters)
            ax.scatter(fit.bestfit[ix], fit.bestfit[iy], c="r", zorder=3, label="best fit")
            for e in fit.ellipses:
                if e.parameters == self.parameters:
                    ax.add_patch(e.patch(edgecolor="k", lw=2))
            ax.legend(loc="upper right")
        ax.set_xlabel(self.parameters[0])
        ax.set_ylabel(self.parameters[1])
        ax.set_xlim(self.x[0], self.x[-1])
        ax.set_ylim(self.y[0], self.y[-1])
        return ax.figure


@dataclass(frozen=True)
class HypotestResult:
    poi: str
    poi_values: np.ndarray
    cls: np.ndarray
    clsb: np.ndarray
    clb: np.ndarray
    cls_expected: np.ndarray | None  # (n, 5): −2σ, −1σ, median, +1σ, +2σ
    test_stat: str
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> HypotestResult:
        band = body.get("cls_expected")
        return cls(poi=body["poi"], poi_values=array(body["poi_values"]), cls=array(body["cls"]),
                   clsb=array(body["clsb"]), clb=array(body["clb"]),
                   cls_expected=None if band is None else array(band), test_stat=body["test_stat"],
                   backend=body["backend"], device=body["device"], elapsed_ms=float(body["elapsed_ms"]))


@dataclass(frozen=True)
class UpperLimitResult:
    poi: str
    level: float
    observed: float
    expected: np.ndarray  # −2σ, −1σ, median, +1σ, +2σ
    scan: np.ndarray
    cls: np.ndarray
    cls_expected: np.ndarray  # (len(scan), 5)
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> UpperLimitResult:
        return cls(poi=body["poi"], level=float(body["level"]), observed=number(body["observed"]),
                   expected=array(body["expected"]), scan=array(body["scan"]), cls=array(body["cls"]),
                   cls_expected=array(body["cls_expected"]), warnings=list(body["warnings"]),
                   backend=body["backend"], device=body["device"], elapsed_ms=float(body["elapsed_ms"]))

    def plot(self, ax: Any = None) -> Any:
        """Observed CLs over the scan, the expected ±1σ/±2σ bands and the level line."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        band = self.cls_expected
        ax.fill_between(self.scan, band[:, 0], band[:, 4], color="yellow", label="expected ±2σ")
        ax.fill_between(self.scan, band[:, 1], band[:, 3], color="limegreen", label="expected ±1σ")
        ax.plot(self.scan, band[:, 2], "k--", label="expected")
        ax.plot(self.scan, self.cls, "k-o", ms=3, label=f"observed (limit {self.observed:.3g})")
        ax.axhline(self.level, color="r", label=f"CLs = {self.level:g}")
        ax.set_xlabel(self.poi)
        ax.set_ylabel("CLs")
        ax.legend(fontsize="small")
        return ax.figure


def _data(data: Any) -> Any:
    return data if isinstance(data, str) else np.asarray(data, dtype=np.float64).tolist()


def _common(model: dict, data: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The request body; options left None take the server's defaults (tuples travel as lists)."""
    body = {"model": model, "data": _data(data)}
    body.update({k: v for k, v in options.items() if v is not None})
    return body


class PyhfAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``.

    Shared keywords: ``data`` ("asimov", "observed", main-bin counts or the full vector),
    ``asimov_pars``, ``init_pars`` and ``par_bounds`` (dicts by parameter name) and
    ``fixed_params`` (names).
    """

    def pyhf_fit(self, model: dict, data: Any = "asimov", *, optimizer: str | None = None,
                 ellipse_pairs: Sequence[tuple[str, str]] | None = None,
                 confidence_levels: Sequence[float] | None = None, ellipse_region: str | None = None,
                 asimov_pars: dict | None = None, init_pars: dict | None = None, par_bounds: dict | None = None,
                 fixed_params: Sequence[str] | None = None) -> Any:
        """``POST /v1/pyhf/fit``: best fit, Hessian, covariance and ellipses → :class:`PyhfFitResult`."""
        body = _common(model, data, {
            "optimizer": optimizer, "ellipse_pairs": ellipse_pairs, "confidence_levels": confidence_levels,
            "ellipse_region": ellipse_region, "asimov_pars": asimov_pars, "init_pars": init_pars,
            "par_bounds": par_bounds, "fixed_params": fixed_params})
        return self._send(Call("POST", "/v1/pyhf/fit", json=body, parse=_parser(PyhfFitResult)))

    def pyhf_scan(self, model: dict, x: tuple[str, float, float, int], y: tuple[str, float, float, int],
                  data: Any = "asimov", *, gradient_points: tuple[int, int] | None = None,
                  quantity: str | None = None, at: dict | None = None, profile: bool | None = None,
                  asimov_pars: dict | None = None,
                  init_pars: dict | None = None, par_bounds: dict | None = None,
                  fixed_params: Sequence[str] | None = None, binary: bool | None = None) -> Any:
        """``POST /v1/pyhf/scan``: ``x`` and ``y`` are ``(name, low, high, points)`` →
        :class:`PyhfScanResult`. ``profile=True`` minimises the other free parameters at each point.
        The answer travels as .npz when ``binary`` is true, or when left None and the grid has
        more than 10,000 points."""
        axes = {k: {"name": a[0], "low": float(a[1]), "high": float(a[2]), "points": int(a[3])}
                for k, a in (("x", x), ("y", y))}
        body = _common(model, data, {
            **axes, "gradient_points": gradient_points, "quantity": quantity, "at": at, "profile": profile,
            "asimov_pars": asimov_pars, "init_pars": init_pars, "par_bounds": par_bounds,
            "fixed_params": fixed_params})
        if binary is None:
            binary = int(x[3]) * int(y[3]) > BINARY_THRESHOLD
        if binary:
            return self._send(Call("POST", "/v1/pyhf/scan", json=body, headers={"Accept": NPZ_MEDIA_TYPE},
                                   parse=lambda r: PyhfScanResult.from_npz(from_npz(r.content))))
        return self._send(Call("POST", "/v1/pyhf/scan", json=body, parse=_parser(PyhfScanResult)))

    def pyhf_hypotest(self, model: dict, poi_values: float | Sequence[float], data: Any = "asimov", *,
                      expected: bool = False, test_stat: str | None = None, asimov_pars: dict | None = None,
                      init_pars: dict | None = None, par_bounds: dict | None = None,
                      fixed_params: Sequence[str] | None = None) -> Any:
        """``POST /v1/pyhf/hypotest``: asymptotic CLs, CLs+b, CLb → :class:`HypotestResult`."""
        values = np.asarray(poi_values, dtype=np.float64).ravel().tolist()
        body = _common(model, data, {
            "poi_values": values, "expected": expected, "test_stat": test_stat, "asimov_pars": asimov_pars,
            "init_pars": init_pars, "par_bounds": par_bounds, "fixed_params": fixed_params})
        return self._send(Call("POST", "/v1/pyhf/hypotest", json=body, parse=_parser(HypotestResult)))

    def pyhf_upper_limit(self, model: dict, scan: tuple[float, float, int] | Sequence[float],
                         data: Any = "asimov", *, level: float | None = None, test_stat: str | None = None,
                         asimov_pars: dict | None = None, init_pars: dict | None = None,
                         par_bounds: dict | None = None, fixed_params: Sequence[str] | None = None) -> Any:
        """``POST /v1/pyhf/upper-limit``: ``scan`` is ``(start, stop, points)`` or the POI values →
        :class:`UpperLimitResult`."""
        if isinstance(scan, tuple) and len(scan) == 3 and isinstance(scan[2], int):
            grid: Any = {"start": float(scan[0]), "stop": float(scan[1]), "points": scan[2]}
        else:
            grid = np.asarray(scan, dtype=np.float64).tolist()
        body = _common(model, data, {
            "scan": grid, "level": level, "test_stat": test_stat, "asimov_pars": asimov_pars,
            "init_pars": init_pars, "par_bounds": par_bounds, "fixed_params": fixed_params})
        return self._send(Call("POST", "/v1/pyhf/upper-limit", json=body, parse=_parser(UpperLimitResult)))


def _parser(result_type: Any) -> Any:
    def parse(response: httpx.Response) -> Any:
        return result_type.from_json(response.json())

    return parse
