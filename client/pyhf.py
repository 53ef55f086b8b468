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
- ``optimizer``: ``"newton"`` (default: a bounded Newton method on the exact Hessian, compiled
  once per model on the server), ``"scipy"`` (pyhf's SLSQP) or ``"minuit"``; ``do_grad``
  (scipy, minuit): gradients by autodiff (``True``) or the optimizer's finite differences
  (``False``, as pyhf's numpy backend, which made pyhf's validation references).

Interpolation codes are part of the model: ``workspace_model(ws, modifier_settings=
interpolation_codes(normsys="code1", histosys="code0"))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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

#: How the best fit is found: the server's Newton method, pyhf's SLSQP (scipy) or MINUIT.
PyhfOptimizer = Literal["newton", "scipy", "minuit"]

#: The profile-likelihood test statistic of hypothesis tests: q̃_μ, q_μ, or q₀ (discovery, μ = 0).
TestStatistic = Literal["qtilde", "q", "q0"]

#: The test statistics of upper limits: q̃_μ or q_μ.
LimitTestStatistic = Literal["qtilde", "q"]

#: p-values from the asymptotic formulae, or from pseudo-experiments.
CalcType = Literal["asymptotics", "toybased"]

#: pyhf's interpolation codes of normsys modifiers (code4: pyhf's default).
NormsysCode = Literal["code1", "code4"]

#: pyhf's interpolation codes of histosys modifiers (code4p: pyhf's default).
HistosysCode = Literal["code0", "code2", "code4p"]

#: What a scan maps: ln L, or −2 ln L.
ScanQuantity = Literal["logpdf", "twice_nll"]

#: Which confidence region an ellipse bounds: both parameters together, or the 1-D intervals.
EllipseRegion = Literal["joint", "projection"]

#: ``"asimov"``, ``"observed"``, main-bin counts or the full data vector.
Data = Literal["asimov", "observed"] | Sequence[float]


def interpolation_codes(normsys: NormsysCode | None = None,
                        histosys: HistosysCode | None = None) -> dict[str, dict[str, str]]:
    """pyhf's ``modifier_settings``: the interpolation code of each modifier type (a type left
    out keeps pyhf's default, code4 or code4p).

    Example:
        >>> from labcrunch.pyhf import interpolation_codes
        >>> interpolation_codes(normsys="code1", histosys="code0")
        {'normsys': {'interpcode': 'code1'}, 'histosys': {'interpcode': 'code0'}}
    """
    codes = {"normsys": normsys, "histosys": histosys}
    return {kind: {"interpcode": code} for kind, code in codes.items() if code is not None}


def simple_model(signal: Sequence[float], bkg: Sequence[float],
                 bkg_uncertainty: Sequence[float] | None = None, *,
                 bkg_up: Sequence[float] | None = None,
                 bkg_down: Sequence[float] | None = None,
                 modifier_settings: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """pyhf's ``uncorrelated_background`` (with ``bkg_uncertainty``) or ``correlated_background``
    (with ``bkg_up`` and ``bkg_down``, a histosys: ``modifier_settings`` may choose its
    interpolation code, see :func:`interpolation_codes`), as the server reads it.

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
    model: dict[str, Any] = {"simple": {**spec, "signal": list(map(float, signal)), "bkg": list(map(float, bkg))}}
    if modifier_settings is not None:
        model["modifier_settings"] = {k: dict(v) for k, v in modifier_settings.items()}
    return model


def workspace_model(workspace: Mapping[str, Any], measurement: str | None = None,
                    patches: Sequence[Any] | None = None,
                    modifier_settings: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """A pyhf JSON workspace (a dict), optionally a measurement name, JSON patches and
    interpolation codes (``modifier_settings``, see :func:`interpolation_codes`)."""
    model: dict[str, Any] = {"workspace": dict(workspace)}
    if measurement is not None:
        model["measurement"] = measurement
    if patches is not None:
        model["patches"] = list(patches)
    if modifier_settings is not None:
        model["modifier_settings"] = {k: dict(v) for k, v in modifier_settings.items()}
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
        converged, optimizer: How the fit went.
        warnings: A fit that did not converge, parameters whose best fit lies on a bound (the
            Hessian there is the curvature at the bound, not an uncertainty), a covariance that
            could not be formed.
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
class PyhfBatchFitResult(ShortRepr):
    """Best fits of one model to many datasets (one row per dataset, in the order sent).

    Attributes:
        parameters: Every parameter's name, in the model's order.
        poi: The parameter of interest (None when the model has none).
        bestfit: (datasets, parameters).
        twice_nll: −2 ln L at each best fit.
        free_parameters, fixed: Names of the free and of the fixed parameters.
        uncertainties: (datasets, parameters): sqrt(diag(2·inv(Hessian))); 0 for fixed
            parameters, NaN where a Hessian is not positive definite.
        converged: One flag per dataset.
        optimizer, warnings: How the fits went (see :class:`PyhfFitResult`).
        backend, device, elapsed_ms: Where and how fast.
    """

    parameters: list[str]
    poi: str | None
    bestfit: np.ndarray
    twice_nll: np.ndarray
    free_parameters: list[str]
    fixed: list[str]
    uncertainties: np.ndarray
    converged: np.ndarray
    optimizer: str
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PyhfBatchFitResult:
        """The result from the server's JSON answer."""
        return cls(
            parameters=list(body["parameters"]), poi=body["poi"], bestfit=array(body["bestfit"]),
            twice_nll=array(body["twice_nll"]), free_parameters=list(body["free_parameters"]),
            fixed=list(body["fixed"]), uncertainties=array(body["uncertainties"]),
            converged=np.asarray(body["converged"], dtype=bool), optimizer=body["optimizer"],
            warnings=list(body["warnings"]), backend=body["backend"], device=body["device"],
            elapsed_ms=float(body["elapsed_ms"]),
        )


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


def _optional(body: Mapping[str, Any], key: str) -> np.ndarray | None:
    value = body.get(key)
    return None if value is None else array(value)


@dataclass(frozen=True, repr=False)
class HypotestResult(ShortRepr):
    """CLs, CLs+b and CLb at each POI value, asymptotic or from toys.

    ``cls_expected`` (with ``expected=True``) has shape (n, 5): the expected CLs at −2σ, −1σ,
    median, +1σ, +2σ. With the discovery statistic ``q0``, ``p0`` is the p-value of the
    background-only hypothesis (pyhf's CLs+b of the μ = 0 test) and ``p0_expected`` its expected
    band. From toys (``calctype="toybased"``): ``ntoys``, the ``seed`` that reproduces them and
    the Monte-Carlo (binomial) uncertainties ``cls_uncertainty``, ``clsb_uncertainty``,
    ``clb_uncertainty``; fields that do not apply are None.
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
    calctype: str = "asymptotics"
    optimizer: str = "newton"
    p0: np.ndarray | None = None
    p0_expected: np.ndarray | None = None
    ntoys: int | None = None
    seed: int | None = None
    cls_uncertainty: np.ndarray | None = None
    clsb_uncertainty: np.ndarray | None = None
    clb_uncertainty: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> HypotestResult:
        """The result from the server's JSON answer."""
        return cls(poi=body["poi"], poi_values=array(body["poi_values"]), cls=array(body["cls"]),
                   clsb=array(body["clsb"]), clb=array(body["clb"]),
                   cls_expected=_optional(body, "cls_expected"), test_stat=body["test_stat"],
                   backend=body["backend"], device=body["device"], elapsed_ms=float(body["elapsed_ms"]),
                   calctype=body.get("calctype", "asymptotics"), optimizer=body.get("optimizer", "scipy"),
                   p0=_optional(body, "p0"), p0_expected=_optional(body, "p0_expected"),
                   ntoys=body.get("ntoys"), seed=body.get("seed"),
                   cls_uncertainty=_optional(body, "cls_uncertainty"),
                   clsb_uncertainty=_optional(body, "clsb_uncertainty"),
                   clb_uncertainty=_optional(body, "clb_uncertainty"),
                   warnings=list(body.get("warnings", [])))


@dataclass(frozen=True, repr=False)
class UpperLimitResult(ShortRepr):
    """The observed and expected upper limits on the POI from a CLs scan.

    ``expected`` holds the limits at −2σ, −1σ, median, +1σ, +2σ; ``cls_expected`` the expected
    CLs at each scan point, shape (len(scan), 5). A limit that lies outside the scan is None
    (``observed``) or NaN (in ``expected``), and ``warnings`` says on which side.
    """

    poi: str
    level: float
    observed: float | None
    expected: np.ndarray
    scan: np.ndarray
    cls: np.ndarray
    cls_expected: np.ndarray
    warnings: list[str]
    backend: str
    device: str
    elapsed_ms: float
    calctype: str = "asymptotics"
    optimizer: str = "newton"
    ntoys: int | None = None
    seed: int | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UpperLimitResult:
        """The result from the server's JSON answer (null limits: None, or NaN in ``expected``)."""
        observed = body["observed"]
        expected = [math.nan if v is None else number(v) for v in body["expected"]]
        return cls(poi=body["poi"], level=float(body["level"]),
                   observed=None if observed is None else number(observed),
                   expected=np.asarray(expected, dtype=np.float64), scan=array(body["scan"]), cls=array(body["cls"]),
                   cls_expected=array(body["cls_expected"]), warnings=list(body["warnings"]),
                   backend=body["backend"], device=body["device"], elapsed_ms=float(body["elapsed_ms"]),
                   calctype=body.get("calctype", "asymptotics"), optimizer=body.get("optimizer", "scipy"),
                   ntoys=body.get("ntoys"), seed=body.get("seed"))

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
        do_grad: bool | None = None,
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
            data: See the module's shared keyword arguments (for many datasets at once, see
                :meth:`pyhf_fit_batch`).
            optimizer, do_grad: See the module's shared keyword arguments.
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
            PyhfFitResult: best fit, Hessian, covariance, correlation and ellipses (numpy);
            ``warnings`` names parameters whose best fit lies on a bound.

        Raises:
            ValidationError: An invalid model or data, unknown parameters, a fit that does not
                converge (422).
            RequestTooLargeError: A model or an ellipse list over a server limit (413).
        """
        body = _request(model, data, optimizer=optimizer, do_grad=do_grad, ellipse_pairs=ellipse_pairs,
                        confidence_levels=confidence_levels, ellipse_region=ellipse_region,
                        asimov_pars=asimov_pars, init_pars=init_pars, par_bounds=par_bounds,
                        fixed_params=fixed_params)
        return Call("POST", "/v1/pyhf/fit", json_answer(PyhfFitResult.from_json), json=body,
                    timeout=timeout, max_retries=max_retries)

    @endpoint
    def pyhf_fit_batch(
        self,
        model: Mapping[str, Any],
        datasets: Sequence[Sequence[float]] | np.ndarray,
        *,
        optimizer: PyhfOptimizer | None = None,
        do_grad: bool | None = None,
        init_pars: Mapping[str, float] | None = None,
        par_bounds: Mapping[str, tuple[float, float]] | None = None,
        fixed_params: Sequence[str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[PyhfBatchFitResult]:
        """Best fits of one model to many datasets (your own toys, pseudo-experiments, ...) in one
        request, answered as one batch of the server's compiled fits (``POST /v1/pyhf/fit`` with
        ``data`` a list of datasets).

        Example:
            >>> seed = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
            >>> fits = lc.pyhf_fit_batch(seed, [[15.0], [18.0], [12.0]])
            >>> fits.bestfit[:, 0].round(3), fits.converged.tolist()
            (array([1. , 1.6, 0.4]), [True, True, True])

        Args:
            model: The model (:func:`simple_model`, :func:`workspace_model`).
            datasets: One row per dataset: main-bin counts or full data vectors.
            optimizer, do_grad, init_pars, par_bounds, fixed_params: See the module's shared
                keyword arguments.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            PyhfBatchFitResult: best fits, −2 ln L, uncertainties and convergence per dataset.

        Raises:
            ValidationError: An invalid model, a dataset of the wrong length (its index in
                ``loc``) (422).
            RequestTooLargeError: More datasets than ``max_fit_datasets`` (413).
        """
        rows = [np.asarray(d, dtype=np.float64).tolist() for d in datasets]
        body = _request(model, "asimov", optimizer=optimizer, do_grad=do_grad, init_pars=init_pars,
                        par_bounds=par_bounds, fixed_params=fixed_params)
        body["data"] = rows
        return Call("POST", "/v1/pyhf/fit", json_answer(PyhfBatchFitResult.from_json), json=body,
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
        poi_values: float | Sequence[float] | None,
        data: Data = "asimov",
        *,
        expected: bool = False,
        test_stat: TestStatistic | None = None,
        calctype: CalcType | None = None,
        ntoys: int | None = None,
        seed: int | None = None,
        optimizer: PyhfOptimizer | None = None,
        do_grad: bool | None = None,
        asimov_pars: Mapping[str, float] | None = None,
        init_pars: Mapping[str, float] | None = None,
        par_bounds: Mapping[str, tuple[float, float]] | None = None,
        fixed_params: Sequence[str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[HypotestResult]:
        """CLs, CLs+b and CLb at one or several POI values (``POST /v1/pyhf/hypotest``), as
        ``pyhf.infer.hypotest``: asymptotic, or from pseudo-experiments; with ``test_stat="q0"``,
        the discovery p-value p0.

        Example:
            >>> seed = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
            >>> test = lc.pyhf_hypotest(seed, [1.0, 2.0], expected=True)
            >>> test.cls.round(3), test.cls_expected.shape
            (array([0.605, 0.209]), (2, 5))
            >>> discovery = lc.pyhf_hypotest(seed, None, [25.0], test_stat="q0")
            >>> discovery.p0.round(4)
            array([0.0076])
            >>> toys = lc.pyhf_hypotest(seed, 1.0, data=[10.0], calctype="toybased", ntoys=200, seed=1)
            >>> toys.ntoys, toys.seed, bool(0 < toys.cls[0] < 1 and toys.cls_uncertainty[0] > 0)
            (200, 1, True)

        Args:
            model: The model (:func:`simple_model`, :func:`workspace_model`).
            poi_values: One POI value or several (None with ``q0``, which tests 0).
            data: See the module's shared keyword arguments.
            expected: Also the expected band (−2σ … +2σ).
            test_stat: ``"qtilde"`` (default), ``"q"`` or ``"q0"``.
            calctype: ``"asymptotics"`` (default) or ``"toybased"``.
            ntoys: Toys per POI value for each of s+b and b (default 1,000; ``max_toys`` bounds
                ntoys × POI values).
            seed: The toys' random seed (default: a fresh one, returned in the result).
            optimizer, do_grad, asimov_pars, init_pars, par_bounds, fixed_params: See the
                module's shared keyword arguments.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            HypotestResult: CLs, CLs+b, CLb (and the expected band; p0 with q0; Monte-Carlo
            uncertainties with toys) per POI value.

        Raises:
            ValidationError: POI values outside the POI's bounds (or not 0 with q0), an invalid
                model or data, fits that do not converge (422).
            RequestTooLargeError: More POI values than ``max_hypotest_points``, more toys than
                ``max_toys`` (413).
        """
        values = None if poi_values is None else np.asarray(poi_values, dtype=np.float64).ravel().tolist()
        body = _request(model, data, poi_values=values, expected=expected, test_stat=test_stat,
                        calctype=calctype, ntoys=ntoys, seed=seed, optimizer=optimizer, do_grad=do_grad,
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
        test_stat: LimitTestStatistic | None = None,
        calctype: CalcType | None = None,
        ntoys: int | None = None,
        seed: int | None = None,
        optimizer: PyhfOptimizer | None = None,
        do_grad: bool | None = None,
        asimov_pars: Mapping[str, float] | None = None,
        init_pars: Mapping[str, float] | None = None,
        par_bounds: Mapping[str, tuple[float, float]] | None = None,
        fixed_params: Sequence[str] | None = None,
        progress: bool = False,
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
            calctype, ntoys, seed: As in :meth:`pyhf_hypotest` (toys at every scan point).
            optimizer, do_grad, asimov_pars, init_pars, par_bounds, fixed_params: See the
                module's shared keyword arguments.
            progress: Run it as a job on the server and draw a progress bar until it has
                finished (see :mod:`labcrunch.jobs`); the result is the same.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            UpperLimitResult: the observed limit, the expected ones and the CLs scan; a limit
            outside the scan is None (NaN in ``expected``), with a warning.

        Raises:
            ValidationError: A decreasing scan, an invalid model or data (422).
            RequestTooLargeError: More scan points than ``max_hypotest_points`` (413).
        """
        if isinstance(scan, tuple) and len(scan) == 3 and isinstance(scan[2], int):
            grid: Any = {"start": float(scan[0]), "stop": float(scan[1]), "points": scan[2]}
        else:
            grid = np.asarray(scan, dtype=np.float64).tolist()
        body = _request(model, data, scan=grid, level=level, test_stat=test_stat, calctype=calctype,
                        ntoys=ntoys, seed=seed, optimizer=optimizer, do_grad=do_grad, asimov_pars=asimov_pars, init_pars=init_pars, par_bounds=par_bounds,
                        fixed_params=fixed_params)
        return Call("POST", "/v1/pyhf/upper-limit", json_answer(UpperLimitResult.from_json),
                    json=body, timeout=timeout, max_retries=max_retries, progress=progress)
