"""HistFactory likelihoods with pyhf (``/v1/pyhf``): fits, likelihood scans, CLs hypothesis tests
and upper limits, and their results.

A model is sent as the server expects it: :func:`simple_model` or :func:`workspace_model` build
that dict (or pass one by hand). Results carry numpy arrays; their ``plot()`` methods draw the
seed notebook's figure (likelihood colour map, gradient arrows, best fit, ellipses), a
correlation matrix, and CLs scans (see :mod:`labcrunch.plot`; matplotlib is imported only then).

Shared keyword arguments of the methods:

- ``data``: ``"asimov"``, ``"observed"`` (a workspace's), the main-bin counts (the auxiliary
  data are appended) or the full data vector.
- ``asimov_pars``: parameter values for the Asimov data, by name (others: suggested init).
- ``init_pars``: initial values by parameter name; ``par_bounds``: ``(low, high)`` by name.
- ``fixed_params``: names of parameters held at their initial value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np

from labcrunch._arrays import NPZ_MEDIA_TYPE, array, binary_wanted, from_npz, number
from labcrunch._base import Call, endpoint, json_answer
from labcrunch._repr import ShortRepr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.patches import Ellipse as EllipsePatch

#: How the best fit is found: scipy's SLSQP or MINUIT (iminuit).
PyhfOptimizer = Literal["scipy", "minuit"]

#: The profile-likelihood test statistic of hypothesis tests: q̃_μ or q_μ.
TestStatistic = Literal["qtilde", "q"]

#: What a scan maps: ln L, or −2 ln L.
ScanQuantity = Literal["logpdf", "twice_nll"]

#: Which confidence region an ellipse bounds: both parameters together, or the 1-D intervals.
EllipseRegion = Literal["joint", "projection"]

#: ``"asimov"``, ``"observed"``, main-bin counts or the full data vector.
Data = Literal["asimov", "observed"] | Sequence[float]


def simple_model(signal: Sequence[float], bkg: Sequence[float],
                 bkg_uncertainty: Sequence[float] | None = None, *,
                 bkg_up: Sequence[float] | None = None,
                 bkg_down: Sequence[float] | None = None) -> dict[str, Any]:
    """pyhf's ``uncorrelated_background`` (with ``bkg_uncertainty``) or ``correlated_background``
    (with ``bkg_up`` and ``bkg_down``), as the server reads it.

    Example:
        >>> simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
        {'simple': {'kind': 'uncorrelated_background', 'bkg_uncertainty': [3.5], 'signal': [5.0], 'bkg': [10.0]}}

    Raises:
        ValueError: Neither ``bkg_uncertainty`` nor both ``bkg_up`` and ``bkg_down`` given.
    """
    spec: dict[str, Any]
    if bkg_uncertainty is not None:
        spec = {"kind": "uncorrelated_background", "bkg_uncertainty": list(map(float, bkg_uncertainty))}
    elif bkg_up is not None and bkg_down is not None:
        spec = {"kind": "correlated_background", "bkg_up": list(map(float, bkg_up)),
                "bkg_down": list(map(float, bkg_down))}
    else:
        raise ValueError("give bkg_uncertainty, or both bkg_up and bkg_down")
    return {"simple": {**spec, "signal": list(map(float, signal)), "bkg": list(map(float, bkg))}}


def workspace_model(workspace: Mapping[str, Any], measurement: str | None = None,
                    patches: Sequence[Any] | None = None) -> dict[str, Any]:
    """A pyhf JSON workspace (a dict), optionally a measurement name and JSON patches."""
    model: dict[str, Any] = {"workspace": dict(workspace)}
    if measurement is not None:
        model["measurement"] = measurement
    if patches is not None:
        model["patches"] = list(patches)
    return model


def _center(body: Mapping[str, Any]) -> Any:
    """The ``center`` field; servers before the rename to American spelling wrote ``centre``."""
    return body["center"] if "center" in body else body["centre"]


@dataclass(frozen=True, repr=False)
class Ellipse(ShortRepr):
    """A confidence ellipse of two parameters around the best fit.

    Attributes:
        parameters: The (x, y) parameter names.
        center: The best fit of the pair.
        semi_axes: (major, minor) half-lengths.
        angle_deg: The major axis' angle from the x axis, anticlockwise.
        confidence_level: The probability the region holds.
        delta_chi2: The Δχ² of its boundary.
        region: ``"joint"`` (both parameters together) or ``"projection"`` (1-D intervals).
    """

    parameters: tuple[str, str]
    center: tuple[float, float]
    semi_axes: tuple[float, float]
    angle_deg: float
    confidence_level: float
    delta_chi2: float
    region: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Ellipse:
        """One entry of a fit answer's ``ellipses`` (``center``, or ``centre`` from older servers)."""
        a, b = body["parameters"]
        cx, cy = _center(body)
        major, minor = body["semi_axes"]
        return cls(parameters=(a, b), center=(number(cx), number(cy)),
                   semi_axes=(number(major), number(minor)), angle_deg=number(body["angle_deg"]),
                   confidence_level=float(body["confidence_level"]),
                   delta_chi2=number(body["delta_chi2"]), region=body["region"])

    def patch(self, **kwargs: Any) -> EllipsePatch:
        """A matplotlib patch of this ellipse (see :func:`labcrunch.plot.ellipse_patch`)."""
        from labcrunch import plot

        return plot.ellipse_patch(self, **kwargs)


@dataclass(frozen=True, repr=False)
class PyhfFitResult(ShortRepr):
    """A maximum-likelihood fit with its Hessian, covariance and confidence ellipses.

    Attributes:
        parameters: Every parameter's name, in the model's order.
        poi: The parameter of interest (None when the model has none).
        bestfit: The best fit of every parameter.
        twice_nll: −2 ln L at the best fit.
        free_parameters, fixed: Names of the free and of the fixed parameters.
        hessian: Of −2 ln L over the free parameters.
        covariance: 2·inv(hessian), over the free parameters.
        correlation: The covariance normalised, over the free parameters.
        uncertainties: One per parameter (0 for fixed ones).
        converged, optimizer, warnings: How the fit went.
        ellipses: Confidence ellipses of the requested pairs and levels.
        backend, device, elapsed_ms: Where and how fast.
    """

    parameters: list[str]
    poi: str | None
    bestfit: np.ndarray
    twice_nll: float
    free_parameters: list[str]
    fixed: list[str]
    hessian: np.ndarray
    covariance: np.ndarray
    correlation: np.ndarray
    uncertainties: np.ndarray
    converged: bool
    optimizer: str
    ellipses: list[Ellipse]
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PyhfFitResult:
        """The result from the server's JSON answer."""
        return cls(
            parameters=list(body["parameters"]), poi=body["poi"], bestfit=array(body["bestfit"]),
            twice_nll=number(body["twice_nll"]), free_parameters=list(body["free_parameters"]),
            fixed=list(body["fixed"]), hessian=array(body["hessian"]), covariance=array(body["covariance"]),
            correlation=array(body["correlation"]), uncertainties=array(body["uncertainties"]),
            converged=bool(body["converged"]), optimizer=body["optimizer"],
            ellipses=[Ellipse.from_json(e) for e in body["ellipses"]],
            warnings=list(body["warnings"]), backend=body["backend"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]),
        )

    def value(self, name: str) -> tuple[float, float]:
        """(best fit, uncertainty) of one parameter."""
        i = self.parameters.index(name)
        return float(self.bestfit[i]), float(self.uncertainties[i])

    def plot_correlation(self, ax: Axes | None = None, *, path: str | Path | None = None) -> Axes:
        """The correlation matrix as a labelled colour map (see
        :func:`labcrunch.plot.correlation_matrix`), saved to ``path`` when given; returns the
        Axes. Needs matplotlib."""
        from labcrunch import plot

        return plot.correlation_matrix(self, ax, path=path)

    def scan_axes(self, x: str, y: str, points: int = 61, *, margin: float = 1.1,
                  ) -> tuple[tuple[str, float, float, int], tuple[str, float, float, int]]:
        """Axes for :meth:`labcrunch.Client.pyhf_scan` of the pair (``x``, ``y``) that hold the
        fit's largest ellipse of that pair, ``margin`` times its half-width on each side of the
        best fit (without such an ellipse, ±3σ of each parameter).

        Example:
            >>> seed = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
            >>> fit = lc.pyhf_fit(seed)
            >>> [(name, round(low, 2), round(high, 2), n)
            ...  for name, low, high, n in fit.scan_axes("mu", "uncorr_bkguncrt[0]", 41)]
            [('mu', -1.85, 3.85, 41), ('uncorr_bkguncrt[0]', 0.04, 1.96, 41)]

        Raises:
            ValueError: A name that is not a free parameter of the fit.
        """
        for name in (x, y):
            if name not in self.free_parameters:
                raise ValueError(f"{name!r} is not a free parameter of this fit "
                                 f"({', '.join(self.free_parameters)})")
        center = [self.value(name)[0] for name in (x, y)]
        reach = [3 * self.value(name)[1] for name in (x, y)]
        pair = [e for e in self.ellipses if e.parameters == (x, y)]
        if pair:
            widest = max(pair, key=lambda e: e.confidence_level)
            a, b = widest.semi_axes
            phi = np.radians(widest.angle_deg)
            reach = [margin * float(np.hypot(a * np.cos(phi), b * np.sin(phi))),
                     margin * float(np.hypot(a * np.sin(phi), b * np.cos(phi)))]
        return ((x, center[0] - reach[0], center[0] + reach[0], points),
                (y, center[1] - reach[1], center[1] + reach[1], points))


@dataclass(frozen=True, repr=False)
class PyhfScanResult(ShortRepr):
    """A likelihood scan of two parameters and its gradient on a coarser grid.

    Attributes:
        parameters: The (x, y) parameter names.
        quantity: ``"logpdf"`` or ``"twice_nll"``.
        x, y: The grid axes.
        values: (len(y), len(x)): ``values[j, i]`` at ``(x[i], y[j])``.
        gradient_x, gradient_y: The gradient grid's axes.
        d_dx, d_dy: The quantity's derivatives, (len(gradient_y), len(gradient_x)).
        center: Where the other parameters sit: ``"bestfit"`` or ``"given"`` (by ``at``).
        profiled: The other free parameters were minimised at each point.
        base_parameters, base: Every parameter's name and its value away from the scanned pair.
        warnings, backend, device, elapsed_ms: How, where and how fast.
    """

    parameters: tuple[str, str]
    quantity: str
    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    gradient_x: np.ndarray
    gradient_y: np.ndarray
    d_dx: np.ndarray
    d_dy: np.ndarray
    center: str
    profiled: bool
    base_parameters: list[str]
    base: np.ndarray
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PyhfScanResult:
        """The result from the server's JSON answer (``center``, or ``centre`` from older servers)."""
        a, b = body["parameters"]
        return cls(
            parameters=(a, b), quantity=body["quantity"], x=array(body["x"]), y=array(body["y"]),
            values=array(body["values"]), gradient_x=array(body["gradient_x"]),
            gradient_y=array(body["gradient_y"]), d_dx=array(body["gradient"]["d_dx"]),
            d_dy=array(body["gradient"]["d_dy"]), center=str(_center(body)),
            profiled=bool(body["profiled"]), base_parameters=list(body["base_parameters"]),
            base=array(body["base"]), warnings=list(body["warnings"]), backend=body["backend"],
            device=body["device"], elapsed_ms=float(body["elapsed_ms"]),
        )

    @classmethod
    def from_npz(cls, arrays: Mapping[str, np.ndarray]) -> PyhfScanResult:
        """The result from the server's .npz answer: the JSON fields as arrays (strings as
        string arrays), with ``gradient`` flattened to ``d_dx`` and ``d_dy``."""
        body: dict[str, Any] = {k: v.tolist() if v.dtype.kind == "U" else v for k, v in arrays.items()}
        body["gradient"] = {"d_dx": arrays["d_dx"], "d_dy": arrays["d_dy"]}
        return cls.from_json(body)

    def plot(self, ax: Axes | None = None, *, fit: PyhfFitResult | None = None,
             arrow_scale: float | None = None, path: str | Path | None = None) -> Axes:
        """The seed notebook's figure: the scan as a colour map, its gradient as arrows and, with
        ``fit``, the best fit and labelled ellipses (see
        :func:`labcrunch.plot.likelihood_scan`), saved to ``path`` when given; returns the Axes.
        Needs matplotlib."""
        from labcrunch import plot

        return plot.likelihood_scan(self, ax, fit=fit, arrow_scale=arrow_scale, path=path)


@dataclass(frozen=True, repr=False)
class HypotestResult(ShortRepr):
    """Asymptotic CLs, CLs+b and CLb at each POI value.

    ``cls_expected`` (with ``expected=True``) has shape (n, 5): the expected CLs at −2σ, −1σ,
    median, +1σ, +2σ.
    """

    poi: str
    poi_values: np.ndarray
    cls: np.ndarray
    clsb: np.ndarray
    clb: np.ndarray
    cls_expected: np.ndarray | None
    test_stat: str
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> HypotestResult:
        """The result from the server's JSON answer."""
        band = body.get("cls_expected")
        return cls(poi=body["poi"], poi_values=array(body["poi_values"]), cls=array(body["cls"]),
                   clsb=array(body["clsb"]), clb=array(body["clb"]),
                   cls_expected=None if band is None else array(band), test_stat=body["test_stat"],
                   backend=body["backend"], device=body["device"], elapsed_ms=float(body["elapsed_ms"]))


@dataclass(frozen=True, repr=False)
class UpperLimitResult(ShortRepr):
    """The observed and expected upper limits on the POI from a CLs scan.

    ``expected`` holds the limits at −2σ, −1σ, median, +1σ, +2σ; ``cls_expected`` the expected
    CLs at each scan point, shape (len(scan), 5).
    """

    poi: str
    level: float
    observed: float
    expected: np.ndarray
    scan: np.ndarray
    cls: np.ndarray
    cls_expected: np.ndarray
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UpperLimitResult:
        """The result from the server's JSON answer."""
        return cls(poi=body["poi"], level=float(body["level"]), observed=number(body["observed"]),
                   expected=array(body["expected"]), scan=array(body["scan"]), cls=array(body["cls"]),
                   cls_expected=array(body["cls_expected"]), warnings=list(body["warnings"]),
                   backend=body["backend"], device=body["device"], elapsed_ms=float(body["elapsed_ms"]))

    def plot(self, ax: Axes | None = None, *, path: str | Path | None = None) -> Axes:
        """Observed CLs over the scan with the expected bands and the level line (see
        :func:`labcrunch.plot.upper_limit`), saved to ``path`` when given; returns the Axes.
        Needs matplotlib."""
        from labcrunch import plot

        return plot.upper_limit(self, ax, path=path)


def _request(model: Mapping[str, Any], data: Data, **options: Any) -> dict[str, Any]:
    """The request body; options left None take the server's defaults."""
    body: dict[str, Any] = {"model": dict(model),
                            "data": data if isinstance(data, str) else np.asarray(data, dtype=np.float64).tolist()}
    body.update({k: dict(v) if isinstance(v, Mapping) else v for k, v in options.items() if v is not None})
    return body


class PyhfAPI:
    """The pyhf methods of :class:`labcrunch.Client` and :class:`labcrunch.AsyncClient`."""

    @endpoint
    def pyhf_fit(
        self,
        model: Mapping[str, Any],
        data: Data = "asimov",
        *,
        optimizer: PyhfOptimizer | None = None,
        ellipse_pairs: Sequence[tuple[str, str]] | None = None,
        confidence_levels: Sequence[float] | None = None,
        ellipse_region: EllipseRegion | None = None,
        asimov_pars: Mapping[str, float] | None = None,
        init_pars: Mapping[str, float] | None = None,
        par_bounds: Mapping[str, tuple[float, float]] | None = None,
        fixed_params: Sequence[str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[PyhfFitResult]:
        """Maximum-likelihood fit with the Hessian of −2 ln L, covariance = 2·inv(Hessian) over
        the free parameters, correlation, uncertainties and confidence ellipses
        (``POST /v1/pyhf/fit``).

        Example:
            >>> seed = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
            >>> fit = lc.pyhf_fit(seed)
            >>> fit.parameters
            ['mu', 'uncorr_bkguncrt[0]']
            >>> [round(v, 4) for v in fit.value("mu")]
            [1.0, 1.044]
            >>> fit.ellipses[0].center, round(fit.ellipses[0].delta_chi2, 3)
            ((1.0, 1.0), 2.296)

        Args:
            model: The model (:func:`simple_model`, :func:`workspace_model`).
            data: See the module's shared keyword arguments.
            optimizer: ``"scipy"`` or ``"minuit"``.
            ellipse_pairs: Parameter pairs to draw ellipses for (default: the POI against a few
                other free parameters).
            confidence_levels: Probabilities of the ellipses (default 68.27 % and 95.45 %).
            ellipse_region: ``"joint"`` (both parameters together) or ``"projection"`` (each
                axis' shadow is that parameter's 1-D interval).
            asimov_pars, init_pars, par_bounds, fixed_params: See the module's shared keyword
                arguments.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            PyhfFitResult: best fit, Hessian, covariance, correlation and ellipses (numpy).

        Raises:
            ValidationError: An invalid model or data, unknown parameters, a fit that does not
                converge (422).
            RequestTooLargeError: A model or an ellipse list over a server limit (413).
        """
        body = _request(model, data, optimizer=optimizer, ellipse_pairs=ellipse_pairs,
                        confidence_levels=confidence_levels, ellipse_region=ellipse_region,
                        asimov_pars=asimov_pars, init_pars=init_pars, par_bounds=par_bounds,
                        fixed_params=fixed_params)
        return Call("POST", "/v1/pyhf/fit", json_answer(PyhfFitResult.from_json), json=body,
                    timeout=timeout, max_retries=max_retries)

    @endpoint
    def pyhf_scan(
        self,
        model: Mapping[str, Any],
        x: tuple[str, float, float, int],
        y: tuple[str, float, float, int],
        data: Data = "asimov",
        *,
        gradient_points: tuple[int, int] | None = None,
        quantity: ScanQuantity | None = None,
        at: Mapping[str, float] | None = None,
        profile: bool | None = None,
        asimov_pars: Mapping[str, float] | None = None,
        init_pars: Mapping[str, float] | None = None,
        par_bounds: Mapping[str, tuple[float, float]] | None = None,
        fixed_params: Sequence[str] | None = None,
        binary: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[PyhfScanResult]:
        """The likelihood on a grid of two parameters and its gradient on a coarser grid
        (``POST /v1/pyhf/scan``).

        Example:
            >>> seed = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
            >>> scan = lc.pyhf_scan(seed, ("mu", 0.5, 1.5, 21), ("uncorr_bkguncrt[0]", 0.5, 1.5, 11),
            ...                     gradient_points=(5, 3))
            >>> scan.values.shape, scan.d_dx.shape, scan.center
            ((11, 21), (3, 5), 'bestfit')

        Args:
            model: The model (:func:`simple_model`, :func:`workspace_model`).
            x: The x axis: ``(parameter name, low, high, points)``.
            y: The y axis, likewise.
            data: See the module's shared keyword arguments.
            gradient_points: Points of the gradient grid along x and y (default (11, 11)).
            quantity: ``"logpdf"`` (ln L, default) or ``"twice_nll"`` (−2 ln L).
            at: Values of the other parameters (default: the best fit).
            profile: Minimise the other free parameters at each point.
            asimov_pars, init_pars, par_bounds, fixed_params: See the module's shared keyword
                arguments.
            binary: Receive the answer as .npz. By default grids of at least
                ``BINARY_THRESHOLD`` (10,000) points do.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            PyhfScanResult: the grid, values and gradient as numpy arrays.

        Raises:
            ValidationError: Unknown or identical parameters, an invalid model or data (422).
            RequestTooLargeError: A grid over ``max_scan_points`` (``max_profile_points`` when
                profiled) (413).
        """
        axes = {name: {"name": a[0], "low": float(a[1]), "high": float(a[2]), "points": int(a[3])}
                for name, a in (("x", x), ("y", y))}
        body = _request(model, data, **axes, gradient_points=gradient_points, quantity=quantity,
                        at=at, profile=profile, asimov_pars=asimov_pars, init_pars=init_pars,
                        par_bounds=par_bounds, fixed_params=fixed_params)
        if binary_wanted(binary, int(x[3]) * int(y[3])):
            def read_npz(response: httpx.Response) -> PyhfScanResult:
                return PyhfScanResult.from_npz(from_npz(response.content))

            return Call("POST", "/v1/pyhf/scan", read_npz, json=body,
                        headers={"Accept": NPZ_MEDIA_TYPE}, timeout=timeout, max_retries=max_retries)
        return Call("POST", "/v1/pyhf/scan", json_answer(PyhfScanResult.from_json), json=body,
                    timeout=timeout, max_retries=max_retries)

    @endpoint
    def pyhf_hypotest(
        self,
        model: Mapping[str, Any],
        poi_values: float | Sequence[float],
        data: Data = "asimov",
        *,
        expected: bool = False,
        test_stat: TestStatistic | None = None,
        asimov_pars: Mapping[str, float] | None = None,
        init_pars: Mapping[str, float] | None = None,
        par_bounds: Mapping[str, tuple[float, float]] | None = None,
        fixed_params: Sequence[str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[HypotestResult]:
        """Asymptotic CLs, CLs+b and CLb at one or several POI values
        (``POST /v1/pyhf/hypotest``), as ``pyhf.infer.hypotest``.

        Example:
            >>> seed = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
            >>> test = lc.pyhf_hypotest(seed, [1.0, 2.0], expected=True)
            >>> test.cls.round(4), test.cls_expected.shape
            (array([0.6047, 0.2094]), (2, 5))

        Args:
            model: The model (:func:`simple_model`, :func:`workspace_model`).
            poi_values: One POI value or several.
            data: See the module's shared keyword arguments.
            expected: Also the expected CLs band (−2σ … +2σ).
            test_stat: ``"qtilde"`` (default) or ``"q"``.
            asimov_pars, init_pars, par_bounds, fixed_params: See the module's shared keyword
                arguments.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            HypotestResult: CLs, CLs+b, CLb (and the expected band) per POI value.

        Raises:
            ValidationError: POI values outside the POI's bounds, an invalid model or data (422).
            RequestTooLargeError: More POI values than ``max_hypotest_points`` (413).
        """
        values = np.asarray(poi_values, dtype=np.float64).ravel().tolist()
        body = _request(model, data, poi_values=values, expected=expected, test_stat=test_stat,
                        asimov_pars=asimov_pars, init_pars=init_pars, par_bounds=par_bounds,
                        fixed_params=fixed_params)
        return Call("POST", "/v1/pyhf/hypotest", json_answer(HypotestResult.from_json), json=body,
                    timeout=timeout, max_retries=max_retries)

    @endpoint
    def pyhf_upper_limit(
        self,
        model: Mapping[str, Any],
        scan: tuple[float, float, int] | Sequence[float],
        data: Data = "asimov",
        *,
        level: float | None = None,
        test_stat: TestStatistic | None = None,
        asimov_pars: Mapping[str, float] | None = None,
        init_pars: Mapping[str, float] | None = None,
        par_bounds: Mapping[str, tuple[float, float]] | None = None,
        fixed_params: Sequence[str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[UpperLimitResult]:
        """Observed and expected upper limits on the POI from a CLs scan
        (``POST /v1/pyhf/upper-limit``), as ``pyhf.infer.intervals.upper_limits``.

        Example:
            >>> seed = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
            >>> limit = lc.pyhf_upper_limit(seed, (0.0, 5.0, 21))
            >>> limit.scan.shape, limit.cls_expected.shape, 0 < limit.observed < 5
            ((21,), (21, 5), True)

        Args:
            model: The model (:func:`simple_model`, :func:`workspace_model`).
            scan: ``(start, stop, points)`` or the POI values themselves.
            data: See the module's shared keyword arguments.
            level: The CLs threshold (default 0.05: 95 % CL).
            test_stat: ``"qtilde"`` (default) or ``"q"``.
            asimov_pars, init_pars, par_bounds, fixed_params: See the module's shared keyword
                arguments.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            UpperLimitResult: the observed limit, the expected ones and the CLs scan.

        Raises:
            ValidationError: A decreasing scan, an invalid model or data (422).
            RequestTooLargeError: More scan points than ``max_hypotest_points`` (413).
        """
        if isinstance(scan, tuple) and len(scan) == 3 and isinstance(scan[2], int):
            grid: Any = {"start": float(scan[0]), "stop": float(scan[1]), "points": scan[2]}
        else:
            grid = np.asarray(scan, dtype=np.float64).tolist()
        body = _request(model, data, scan=grid, level=level, test_stat=test_stat,
                        asimov_pars=asimov_pars, init_pars=init_pars, par_bounds=par_bounds,
                        fixed_params=fixed_params)
        return Call("POST", "/v1/pyhf/upper-limit", json_answer(UpperLimitResult.from_json),
                    json=body, timeout=timeout, max_retries=max_retries)
