"""HistFactory models from request JSON: build, validate, cache, and resolve the data vector.

A model is either one of pyhf's simple models or a JSON workspace (+ measurement, + optional
JSON patches), built with the request's interpolation codes (``modifier_settings``). Building
one costs a schema validation and, on first use, JAX compilations, so built models live in a
bounded LRU (:data:`MODELS`, one per process) keyed by a hash of the canonical JSON of their
spec and settings; each :class:`CompiledModel` carries its own compiled fits
(:class:`~labcrunch_service.pyhf.minimizers.ModelFits`) and jitted Hessian and scan functions,
which JAX then reuses for every later request with the same model (their traces are counted in
:data:`labcrunch_service.cache.TRACES` under ``pyhf.<function>``).

pyhf's backend is JAX, selected once by :func:`labcrunch_service.backends.configure` (never per request).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import jsonpatch
import numpy as np
import pyhf

from labcrunch_service import backends
from labcrunch_service.cache import LruCache, counting_traces
from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.pyhf.minimizers import ModelFits, hessian_function
from labcrunch_service.settings import Limits

if TYPE_CHECKING:
    from labcrunch_service.pyhf.schemas import PyhfRequest

backends.configure()

SIMPLE_KINDS = ("uncorrelated_background", "correlated_background")
#: The interpolation codes a model gets for a type its request's modifier_settings leave out
#: (pyhf's defaults; the codes each type accepts are in schemas.ModifierSettings).
DEFAULT_MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
# The per-point function in a scan is mapped over the grid in batches of this many points, which
# bounds device memory for big models while keeping each batch vectorised.
SCAN_BATCH = 4096


def _loc(*parts: str | int) -> list[str | int]:
    return ["body", *parts]


@dataclass(eq=False)
class CompiledModel:
    """A built pyhf model with its jitted likelihood functions (one per model, reused)."""

    key: str
    model: Any  # pyhf.pdf.Model
    observations: list[float] | None  # main-bin observations of a workspace, else None

    def __post_init__(self) -> None:
        model = self.model

        def twice_nll(pars: jax.Array, data: jax.Array) -> jax.Array:
            return -2.0 * model.logpdf(pars, data)[0]

        def logpdf_on_plane(xy: jax.Array, base: jax.Array, idx: jax.Array, data: jax.Array) -> jax.Array:
            # The other parameters stay at `base`; idx holds the two scanned parameters' indices.
            return model.logpdf(base.at[idx].set(xy), data)[0]

        def scan_values(xy: jax.Array, base: jax.Array, idx: jax.Array, data: jax.Array) -> jax.Array:
            return jax.lax.map(lambda p: logpdf_on_plane(p, base, idx, data), xy, batch_size=SCAN_BATCH)

        def scan_gradients(xy: jax.Array, base: jax.Array, idx: jax.Array, data: jax.Array) -> jax.Array:
            grad = jax.grad(logpdf_on_plane)  # in the two scanned parameters only
            return jax.lax.map(lambda p: grad(p, base, idx, data), xy, batch_size=SCAN_BATCH)

        def gradients(rows: jax.Array, data: jax.Array) -> jax.Array:
            # ∇ logpdf at full parameter vectors (one per row), e.g. at profiled points of a scan
            grad = jax.grad(lambda p: model.logpdf(p, data)[0])
            return jax.lax.map(grad, rows, batch_size=SCAN_BATCH)

        self.gradients = jax.jit(counting_traces("pyhf.gradients", gradients))
        hessian = hessian_function(twice_nll, model.config.npars)
        self.hessian = jax.jit(counting_traces("pyhf.hessian", hessian))
        self.fits = ModelFits(model)
        self.scan_values = jax.jit(counting_traces("pyhf.scan_values", scan_values))
        self.scan_gradients = jax.jit(counting_traces("pyhf.scan_gradients", scan_gradients))

    # --- parameter names ------------------------------------------------------------------
    @property
    def par_names(self) -> list[str]:
        """Expanded names, one per scalar parameter: ``mu``, ``uncorr_bkguncrt[0]``, ..."""
        return list(self.model.config.par_names)

    @property
    def poi_name(self) -> str | None:
        index = self.model.config.poi_index
        return None if index is None else self.par_names[index]

    def index_of(self, name: str, loc: Sequence[str | int]) -> int:
        try:
            return self.par_names.index(name)
        except ValueError:
            known = self.par_names
            shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
            raise InvalidInput(
                f"Unknown parameter {name!r}; the model's parameters are: {shown}.",
                errors=[{"loc": list(loc), "msg": f"unknown parameter {name!r}", "type": "unknown_parameter"}],
            ) from None


#: Built models by :func:`canonical_key` of their spec, least recently used dropped first.
MODELS: LruCache[CompiledModel] = LruCache(Limits().model_cache_size, name="pyhf.models",
                                           setting="limits.model_cache_size")


def canonical_key(spec: dict[str, Any]) -> str:
    """sha256 of the spec's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def modifier_settings(given: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """The interpolation codes a model is built with: pyhf's defaults (normsys code4, histosys
    code4p) for each type ``given`` leaves out. (pyhf itself would fall back to its appliers'
    own defaults, code1 and code0, for a type left out of a partial modifier_settings.)"""
    settings = {kind: dict(value) for kind, value in DEFAULT_MODIFIER_SETTINGS.items()}
    for kind, value in (given or {}).items():
        if value is not None:
            settings[kind] = {"interpcode": value["interpcode"]}
    return settings


# --- building -------------------------------------------------------------------------------
def _build_simple(simple: dict[str, Any], settings: dict[str, dict[str, str]]) -> tuple[Any, None]:
    kind = simple.get("kind")
    if kind not in SIMPLE_KINDS:
        raise InvalidInput(
            f"Unknown simple model kind {kind!r}; use one of {', '.join(SIMPLE_KINDS)}.",
            errors=[{"loc": _loc("model", "simple", "kind"), "msg": "unknown kind", "type": "enum"}],
        )
    fields = ("signal", "bkg", "bkg_uncertainty") if kind == "uncorrelated_background" else (
        "signal", "bkg", "bkg_up", "bkg_down")
    arrays = {}
    for name in fields:
        values = simple.get(name)
        if values is None:
            raise InvalidInput(
                f"A {kind} model needs {', '.join(fields)}; {name!r} is missing.",
                errors=[{"loc": _loc("model", "simple", name), "msg": "field required", "type": "missing"}],
            )
        arrays[name] = [float(v) for v in values]
    nbins = len(arrays["signal"])
    for name, values in arrays.items():
        if len(values) != nbins:
            raise InvalidInput(
                f"'{name}' has {len(values)} bins but 'signal' has {nbins}; every list needs one "
                "number per bin.",
                errors=[{"loc": _loc("model", "simple", name), "msg": f"expected {nbins} bins",
                         "type": "bin_count"}],
            )
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise InvalidInput(
                f"'{name}' must hold finite, non-negative numbers.",
                errors=[{"loc": _loc("model", "simple", name), "msg": "finite and >= 0 required",
                         "type": "value_error"}],
            )
    if kind == "uncorrelated_background":
        if any(u <= 0 for u in arrays["bkg_uncertainty"]) or any(b <= 0 for b in arrays["bkg"]):
            raise InvalidInput(
                "'bkg' and 'bkg_uncertainty' must be positive in every bin (the Poisson constraint "
                "has tau = (bkg / bkg_uncertainty)^2).",
                errors=[{"loc": _loc("model", "simple", "bkg_uncertainty"), "msg": "must be > 0",
                         "type": "value_error"}],
            )
        model = pyhf.simplemodels.uncorrelated_background(**arrays)
    else:
        model = pyhf.simplemodels.correlated_background(**arrays)
    if settings != DEFAULT_MODIFIER_SETTINGS:  # the simple models take no settings: rebuild their spec
        model = pyhf.Model(model.spec, poi_name="mu", modifier_settings=settings)
    return model, None


def _spec_error(exc: Exception, base: list[str | int], what: str) -> InvalidInput:
    """pyhf's schema error → 422 quoting its message and the JSON path inside ``what``."""
    parent = getattr(exc, "parent", None)
    message = getattr(parent, "message", None) or str(exc).split("\n")[0]
    path = [p for p in getattr(parent, "path", [])] if parent is not None else []
    where = getattr(exc, "path", "") or "(top level)"
    return InvalidInput(
        f"The {what} does not follow pyhf's schema at {where}: {message}",
        errors=[{"loc": base + path, "msg": message, "type": "pyhf_schema"}],
    )


def _check_bin_counts(workspace: dict[str, Any], base: list[str | int]) -> None:
    """Every sample of a channel needs as many bins as the channel's first sample.

    pyhf finds this too, but its message names no channel or sample; ours points at the data.
    """
    for c, channel in enumerate(workspace["channels"]):
        samples = channel["samples"]
        nbins = len(samples[0]["data"])
        for s, sample in enumerate(samples[1:], start=1):
            if len(sample["data"]) != nbins:
                raise InvalidInput(
                    f"Channel {channel['name']!r}: sample {sample['name']!r} has {len(sample['data'])} "
                    f"bins but sample {samples[0]['name']!r} has {nbins}; every sample of a channel "
                    "needs the same bins.",
                    errors=[{"loc": base + ["channels", c, "samples", s, "data"],
                             "msg": f"expected {nbins} bins", "type": "bin_count"}],
                )


def _build_workspace(workspace: dict[str, Any], measurement: str | None, patches: list[dict[str, Any]] | None,
                     settings: dict[str, dict[str, str]]) -> tuple[Any, list[float]]:
    base = _loc("model", "workspace")
    try:
        ws = pyhf.Workspace(workspace)
    except pyhf.exceptions.InvalidSpecification as exc:
        raise _spec_error(exc, base, "workspace") from None
    _check_bin_counts(workspace, base)
    try:
        model = ws.model(measurement_name=measurement, patches=patches or None, modifier_settings=settings)
    except pyhf.exceptions.InvalidMeasurement as exc:
        names = [m["name"] for m in ws.get("measurements", [])]
        raise InvalidInput(
            f"{exc} The workspace's measurements are: {', '.join(names) or 'none'}.",
            errors=[{"loc": _loc("model", "measurement"), "msg": str(exc), "type": "unknown_measurement"}],
        ) from None
    except pyhf.exceptions.InvalidSpecification as exc:
        raise _spec_error(exc, _loc("model", "patches"), "patched model spec") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise InvalidInput(
            f"A patch could not be applied to the model spec: {exc}",
            errors=[{"loc": _loc("model", "patches"), "msg": str(exc), "type": "json_patch"}],
        ) from None
    try:
        observations = [float(v) for v in ws.data(model, include_auxdata=False)]
    except KeyError as exc:
        raise InvalidInput(
            f"The workspace has no observations for channel {exc}.",
            errors=[{"loc": base + ["observations"], "msg": f"missing channel {exc}", "type": "missing"}],
        ) from None
    if len(observations) != model.config.nmaindata:
        raise InvalidInput(
            f"The workspace's observations hold {len(observations)} bins; the model's channels have "
            f"{model.config.nmaindata}.",
            errors=[{"loc": base + ["observations"], "msg": f"expected {model.config.nmaindata} bins",
                     "type": "bin_count"}],
        )
    return model, observations


# Modifiers with one parameter per bin of their channel; every other type has one parameter.
PER_BIN_MODIFIERS = ("shapesys", "staterror", "shapefactor")


def _declared_parameters(spec: dict[str, Any]) -> int | None:
    """The number of parameters the spec will give, counted from its raw JSON; None if malformed.

    pyhf's validation and model build cost seconds to minutes for a spec with many per-bin
    modifiers (a 5,000-bin shapesys took 9 s), so the parameter limit is checked on this count
    first. Parameters are shared by name, as in pyhf; patches are applied the way
    ``pyhf.Workspace.model`` applies them. A malformed spec is left to pyhf, which says where.
    """
    try:
        if spec.get("simple") is not None:
            simple = spec["simple"]  # μ plus one histosys, or plus one shapesys γ per bin
            return 2 if simple.get("kind") == "correlated_background" else 1 + len(simple["signal"])
        workspace = spec["workspace"]
        measurements = workspace["measurements"]
        name = spec.get("measurement")
        chosen = measurements[0] if name is None else next(m for m in measurements if m["name"] == name)
        modelspec = {"channels": workspace["channels"], "parameters": chosen["config"]["parameters"]}
        for patch in spec.get("patches") or []:
            modelspec = jsonpatch.JsonPatch(patch).apply(modelspec)
        sizes: dict[str, int] = {}
        for channel in modelspec["channels"]:
            nbins = max(len(sample["data"]) for sample in channel["samples"])
            for sample in channel["samples"]:
                for modifier in sample["modifiers"]:
                    size = nbins if modifier["type"] in PER_BIN_MODIFIERS else 1
                    sizes[modifier["name"]] = max(sizes.get(modifier["name"], 0), size)
        return sum(sizes.values())
    except Exception:  # noqa: BLE001 - any malformed spec: pyhf's validation reports it
        return None


def _check_parameter_count(npars: int, max_parameters: int) -> None:
    if npars > max_parameters:
        raise LimitExceeded(
            f"The model has {npars} parameters; at most {max_parameters} are accepted.",
            limit="max_pyhf_parameters", maximum=max_parameters, value=npars,
        )


def model_from_spec(spec: dict[str, Any], *, max_parameters: int) -> CompiledModel:
    """The request's ``model`` object → a (cached) CompiledModel; 422 on any invalid model, 413
    over ``max_parameters``.

    ``spec`` has exactly one of ``simple`` or ``workspace`` (with optional ``measurement`` and
    ``patches``), and optional ``modifier_settings`` (interpolation codes, part of the key).
    """
    settings = modifier_settings(spec.get("modifier_settings"))
    canonical = {k: spec.get(k) for k in ("simple", "workspace", "measurement", "patches")}
    key = canonical_key({**canonical, "modifier_settings": settings})

    def build() -> CompiledModel:
        declared = _declared_parameters(spec)
        if declared is not None:
            _check_parameter_count(declared, max_parameters)  # before pyhf's costly validation and build
        try:
            if spec.get("simple") is not None:
                model, observations = _build_simple(spec["simple"], settings)
            else:
                model, observations = _build_workspace(spec["workspace"], spec.get("measurement"),
                                                       spec.get("patches"), settings)
        except InvalidInput:
            raise
        except pyhf.exceptions.InvalidSpecification as exc:
            raise _spec_error(exc, _loc("model"), "model") from None
        except Exception as exc:  # noqa: BLE001 - everything here is the user's spec: a 422, not a 500
            # pyhf raises InvalidModel, InvalidModifier, ValueError, KeyError... for specs that
            # pass the schema but not its semantics (e.g. samples with different bin counts).
            raise InvalidInput(
                f"pyhf could not build the model: {type(exc).__name__}: {exc}",
                errors=[{"loc": _loc("model"), "msg": str(exc), "type": "pyhf_model"}],
            ) from None
        _check_parameter_count(model.config.npars, max_parameters)  # an over-large model is not kept
        return CompiledModel(key, model, observations)

    cm = MODELS.get_or_build(key, build)
    # Again for a cached model: the cache is the process's, and another app may allow more.
    _check_parameter_count(cm.model.config.npars, max_parameters)
    return cm


def load(request: PyhfRequest, limits: Limits) -> tuple[CompiledModel, np.ndarray]:
    """The request's (cached) model and its full data vector."""
    cm = model_from_spec(request.model.model_dump(), max_parameters=limits.max_pyhf_parameters)
    return cm, resolve_data(cm, request.data, request.asimov_pars)


# --- parameters by name ---------------------------------------------------------------------
def parameter_values(cm: CompiledModel, values: dict[str, float] | None, *, loc: str) -> np.ndarray:
    """The model's suggested init with the named overrides applied."""
    pars = np.asarray(cm.model.config.suggested_init(), dtype=np.float64)
    for name, value in (values or {}).items():
        if not math.isfinite(value):
            raise InvalidInput(f"{loc}[{name!r}] must be finite.",
                               errors=[{"loc": _loc(loc, name), "msg": "must be finite", "type": "value_error"}])
        pars[cm.index_of(name, _loc(loc, name))] = value
    return pars


def parameter_bounds(cm: CompiledModel, bounds: dict[str, Sequence[float]] | None) -> np.ndarray:
    """The model's suggested bounds with the named overrides applied, shape (npars, 2)."""
    out = np.asarray(cm.model.config.suggested_bounds(), dtype=np.float64).reshape(-1, 2)
    for name, (low, high) in (bounds or {}).items():
        if not (low < high):
            raise InvalidInput(
                f"par_bounds[{name!r}] = [{low}, {high}] is empty; the lower bound must be below the upper.",
                errors=[{"loc": _loc("par_bounds", name), "msg": "lower bound must be < upper",
                         "type": "value_error"}],
            )
        out[cm.index_of(name, _loc("par_bounds", name))] = (low, high)
    return out


def fixed_mask(cm: CompiledModel, names: Sequence[str] | None) -> np.ndarray:
    """The model's own fixed parameters (e.g. a fixed lumi) plus the ones named in the request."""
    fixed = np.asarray(cm.model.config.suggested_fixed(), dtype=bool)
    for i, name in enumerate(names or []):
        fixed[cm.index_of(name, _loc("fixed_params", i))] = True
    return fixed


# --- data -----------------------------------------------------------------------------------
def resolve_data(cm: CompiledModel, data: str | Sequence[float],
                 asimov_pars: dict[str, float] | None = None, loc: Sequence[str | int] = ("data",)) -> np.ndarray:
    """The request's ``data`` → the full data vector (main bins then auxiliary data).

    ``"asimov"``: expected data at the suggested init (or ``asimov_pars``); ``"observed"``: the
    workspace's observations; a list of main-bin counts gets the auxiliary data appended; a list
    of main + auxiliary length is used as given.
    """
    config = cm.model.config
    if data == "asimov":
        pars = parameter_values(cm, asimov_pars, loc="asimov_pars")
        expected = np.asarray(cm.model.expected_data(jnp.asarray(pars, dtype=jnp.float64)), dtype=np.float64)
        if not np.all(np.isfinite(expected)) or np.any(expected < 0):
            raise InvalidInput(
                "The Asimov data at these asimov_pars hold negative or non-finite expected counts; "
                "choose parameter values the model can take.",
                errors=[{"loc": _loc("asimov_pars"), "msg": "expected counts must be finite and >= 0",
                         "type": "value_error"}],
            )
        return expected
    if data == "observed":
        if cm.observations is None:
            raise InvalidInput(
                "A simple model has no observations: send data 'asimov' or the main-bin counts.",
                errors=[{"loc": _loc(*loc), "msg": "no observations in a simple model", "type": "value_error"}],
            )
        return np.asarray(cm.observations + list(config.auxdata), dtype=np.float64)
    if isinstance(data, str):
        raise InvalidInput(
            f"data must be 'asimov', 'observed' or a list of numbers, not {data!r}.",
            errors=[{"loc": _loc(*loc), "msg": "unknown data keyword", "type": "enum"}],
        )
    values = np.asarray(data, dtype=np.float64)
    nmain, naux = config.nmaindata, config.nauxdata
    if values.ndim != 1 or values.size not in (nmain, nmain + naux):
        raise InvalidInput(
            f"data has {values.size} numbers; this model expects {nmain} main-bin counts "
            f"(auxiliary data appended for you) or the full vector of {nmain + naux}.",
            errors=[{"loc": _loc(*loc), "msg": f"expected length {nmain} or {nmain + naux}",
                     "type": "data_length"}],
            expected_length=[nmain, nmain + naux],
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvalidInput(
            "data must hold finite, non-negative counts.",
            errors=[{"loc": _loc(*loc), "msg": "finite and >= 0 required", "type": "value_error"}],
        )
    if values.size == nmain:
        values = np.concatenate([values, np.asarray(config.auxdata, dtype=np.float64)])
    return values
