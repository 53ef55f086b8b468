"""The fits of a built model, however they are asked for: one, many (toys, batch fits, scan
points, hypothesis tests), by the Newton method or by pyhf's own optimizers.

``newton`` (the default) is the bounded Newton method of :mod:`newton` on −2 ln L:

- Per model, one compiled program does a whole fit (:meth:`ModelFits.program`): data, start,
  bounds and fixed mask are its arguments, so every later fit of the model, whatever its data
  or fixed parameters, reuses it. On a CPU, fits of a batch run one after another through it
  (vmapping them measured slower per fit there); on an accelerator, batches run vmapped in
  chunks of :func:`chunk_size` fits.
- That program takes seconds to compile. While it is not compiled, a request of at most
  :data:`LIGHT_MAX_FITS` fits takes the *stepwise* path instead: Newton's iterations driven from
  Python over a value-and-gradient function compiled with XLA's cheap settings (about a third
  of the compile time), the Hessian from finite differences of that exact gradient. From the
  model's second such request on, the program compiles in a background thread (one per process,
  lowest CPU priority; a model asked for once costs no whole-program compile), and later
  requests use it. A request never waits for a background compile it can do without; a larger
  one compiles (or joins the compile of) the program itself.

``scipy`` and ``minuit`` are pyhf's own optimizers (SLSQP, MINUIT), one fit at a time, exactly
as pyhf runs them (``do_grad``: pyhf's choice of autodiff or finite-difference gradients).

Compiled functions live on the model (:class:`ModelFits`), so they go with it when the model
cache drops it; their traces are counted in :data:`labcrunch_service.cache.TRACES` under
``pyhf.newton``, ``pyhf.newton_batch`` and ``pyhf.stepwise``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pyhf

from labcrunch_service import backends, progress
from labcrunch_service.cache import LruCache, counting_traces
from labcrunch_service.pyhf import newton

backends.configure()

log = logging.getLogger(__name__)

Optimizer = Literal["newton", "scipy", "minuit"]

#: A request of at most this many fits takes the stepwise path while the model's program is
#: not compiled (an asymptotic hypotest at up to 6 POI values needs 3 + 2·6 fits).
LIGHT_MAX_FITS = 16
#: XLA settings of the stepwise path's value-and-gradient compile: no LLVM optimisation. It
#: compiles in about a third of the time and runs a few times slower, which a few dozen calls
#: per fit do not notice.
LIGHT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
#: Up to this many parameters the Hessian is taken forward-over-forward, which XLA compiles in
#: about half the time of jax.hessian's forward-over-reverse (example workspace, 8 parameters:
#: ~1 s against ~2.3 s) but which costs n² instead of n derivative passes when it runs (50
#: parameters: 4 ms against 0.4 ms; 200: 1.7 s against 40 ms). Both are exact.
FORWARD_HESSIAN_MAX_PARAMETERS = 16
#: Where a fit starts a normsys (code1) or histosys (code0) parameter at exactly 0, the kink of
#: its piecewise interpolation, it starts this far above it instead. At the kink −2 ln L has no
#: derivative (JAX's is the lower branch's, and for code1 of the wrong sign); just above it, the
#: first step follows the upper branch as pyhf's finite-difference fits (its numpy backend, the
#: one its validation references come from) and ROOT do. The value moves by ~1e-8 of a slope.
KINK_START = 1e-8
_KINKED_CODES = {"normsys": ("code1",), "histosys": ("code0",)}


def hessian_function(twice_nll: Callable[[jax.Array, jax.Array], jax.Array], npars: int) -> Callable:
    """The exact Hessian of ``twice_nll(pars, data)`` in ``pars``, forward- or reverse-mode by size."""
    return jax.jacfwd(jax.jacfwd(twice_nll)) if npars <= FORWARD_HESSIAN_MAX_PARAMETERS else jax.hessian(twice_nll)


def vmap_batches() -> bool:
    """Whether batches of fits run vmapped (accelerators) rather than one by one (CPU)."""
    return jax.default_backend() != "cpu"


def chunk_size(npars: int) -> int:
    """Fits per vmapped call on an accelerator: a power of two, bounded by the Hessians' memory
    (2²² numbers in all) and at most 4,096."""
    size = max(16, min(4096, (1 << 22) // max(1, npars * npars)))
    return 1 << (size.bit_length() - 1)


@dataclass(frozen=True)
class FitBatch:
    """Fits of one model: a dataset, a start and a fixed mask each; one box for all."""

    data: np.ndarray  # (B, ndata)
    init: np.ndarray  # (B, npars)
    fixed: np.ndarray  # (B, npars), bool
    low: np.ndarray  # (npars,)
    high: np.ndarray  # (npars,)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def of(cls, data: np.ndarray, init: np.ndarray, fixed: np.ndarray, bounds: np.ndarray) -> FitBatch:
        """Rows broadcast against each other: one dataset and many starts, or the reverse."""
        data, init, fixed = np.atleast_2d(data), np.atleast_2d(init), np.atleast_2d(fixed)
        count = max(len(data), len(init), len(fixed))
        return cls(np.broadcast_to(data, (count, data.shape[1])).astype(np.float64),
                   np.broadcast_to(init, (count, init.shape[1])).astype(np.float64),
                   np.broadcast_to(fixed, (count, fixed.shape[1])).astype(bool),
                   np.asarray(bounds[:, 0], dtype=np.float64), np.asarray(bounds[:, 1], dtype=np.float64))


@dataclass(frozen=True)
class FitResults:
    """One row per fit of a :class:`FitBatch`."""

    pars: np.ndarray  # (B, npars)
    twice_nll: np.ndarray  # (B,)
    hessian: np.ndarray | None  # (B, npars, npars) of twice_nll (newton); None from pyhf's optimizers
    converged: np.ndarray  # (B,), bool
    message: str = ""  # why a pyhf optimizer's fit failed, if one did

    def take(self, rows: slice | np.ndarray) -> FitResults:
        """The results of some rows (a slice or indices)."""
        return FitResults(self.pars[rows], self.twice_nll[rows], None if self.hessian is None else self.hessian[rows],
                          self.converged[rows], self.message)


class ModelFits:
    """The compiled fits of one pyhf model (built once per model, kept with it)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.npars = model.config.npars
        self.ndata = model.config.nmaindata + model.config.nauxdata

        def twice_nll(pars: jax.Array, data: jax.Array) -> jax.Array:
            return -2.0 * model.logpdf(pars, data)[0]

        hessian = hessian_function(twice_nll, self.npars)

        def value_grad_hessian(pars: jax.Array, data: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
            value, grad = jax.value_and_grad(twice_nll)(pars, data)
            return value, grad, hessian(pars, data)

        self._twice_nll = twice_nll
        self._minimize = newton.program(twice_nll, value_grad_hessian)
        self._compiled: LruCache[Any] = LruCache(4, name="pyhf.programs")  # single-flight builds
        self._scheduled = False
        self._stepwise_calls = 0
        self._lock = threading.Lock()
        settings = getattr(model.config, "modifier_settings", {}) or {}
        kinked = {name for name, kind in model.config.modifiers
                  if settings.get(kind, {}).get("interpcode", _default_code(kind)) in _KINKED_CODES.get(kind, ())}
        self.kinked = np.zeros(self.npars, dtype=bool)
        for name in kinked:
            self.kinked[model.config.par_slice(name)] = True

    # --- compiled functions ----------------------------------------------------------------
    def _shapes(self, batch: int | None = None) -> tuple[jax.ShapeDtypeStruct, ...]:
        lead = () if batch is None else (batch,)
        pars = jax.ShapeDtypeStruct(lead + (self.npars,), jnp.float64)
        box = jax.ShapeDtypeStruct((self.npars,), jnp.float64)
        return (pars, jax.ShapeDtypeStruct(lead + (self.ndata,), jnp.float64), box, box,
                jax.ShapeDtypeStruct(lead + (self.npars,), jnp.bool_))

    def _build_program(self) -> Any:
        traced = jax.jit(counting_traces("pyhf.newton", self._minimize))
        return traced.lower(*self._shapes()).compile()

    def _build_batch_program(self, size: int) -> Any:
        mapped = jax.vmap(self._minimize, in_axes=(0, 0, None, None, 0))
        return jax.jit(counting_traces("pyhf.newton_batch", mapped)).lower(*self._shapes(size)).compile()

    def _build_stepwise(self) -> Any:
        lowered = jax.jit(counting_traces("pyhf.stepwise", jax.value_and_grad(self._twice_nll))).lower(
            *self._shapes()[:2])
        try:
            return lowered.compile(compiler_options=LIGHT_COMPILER_OPTIONS)
        except Exception:  # noqa: BLE001 - an XLA without these options: its defaults
            return lowered.compile()

    def program(self) -> Any:
        """The whole-fit program (compiled now, or the background compile joined)."""
        return self._compiled.get_or_build("program", self._build_program)

    def program_ready(self) -> bool:
        return self._compiled.get("program") is not None

    def compile_in_background(self) -> None:
        """Queue this model's program for the background compiler (once)."""
        with self._lock:
            if self._scheduled or self.program_ready():
                return
            self._scheduled = True
        _BACKGROUND.submit(self)

    # --- fits ------------------------------------------------------------------------------
    def start(self, init: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        """``init`` with free kinked parameters at exactly 0 moved to :data:`KINK_START`."""
        nudge = self.kinked & ~fixed & (init == 0.0)
        return np.where(nudge, KINK_START, init)

    def minimize(self, batch: FitBatch, optimizer: Optimizer = "newton", *, do_grad: bool | None = None,
                 workload: int | None = None, report: Callable[[int, int], None] | None = None) -> FitResults:
        """Every fit of ``batch``. ``workload``: the fits the whole request will ask for (the
        stepwise path serves only small requests); ``report(done, total)`` runs between fits or
        chunks (e.g. :func:`labcrunch_service.progress.report`, which also stops past the deadline)."""
        if optimizer != "newton":
            return self._pyhf_fits(batch, optimizer, do_grad, report)
        init = self.start(batch.init, batch.fixed)
        if vmap_batches() and len(batch) > 1:
            return self._batched(batch, init, report)
        if not self.program_ready() and (workload or len(batch)) <= LIGHT_MAX_FITS:
            with self._lock:
                self._stepwise_calls += 1
                again = self._stepwise_calls > 1
            if again:  # a model asked for again is likely to be asked more: compile it
                self.compile_in_background()
            return self._stepwise(batch, init, report)
        return self._looped(self.program(), batch, init, report)

    def _looped(self, program: Any, batch: FitBatch, init: np.ndarray,
                report: Callable[[int, int], None] | None) -> FitResults:
        rows = []
        low, high = jnp.asarray(batch.low), jnp.asarray(batch.high)
        for k in range(len(batch)):
            rows.append(jax.device_get(program(init[k], batch.data[k], low, high, batch.fixed[k])))
            if report is not None:
                report(k + 1, len(batch))
            else:
                progress.check_deadline()
        return _results([r.pars for r in rows], [r.value for r in rows], [r.hessian for r in rows],
                        [r.converged for r in rows])

    def _batched(self, batch: FitBatch, init: np.ndarray, report: Callable[[int, int], None] | None) -> FitResults:
        size = chunk_size(self.npars)
        program = self._compiled.get_or_build(("batch", size), lambda: self._build_batch_program(size))
        parts: list[newton.NewtonResult] = []
        for begin in range(0, len(batch), size):
            stop = min(begin + size, len(batch))
            index = np.arange(begin, begin + size).clip(max=stop - 1)  # pad with the last fit
            parts.append(jax.device_get(program(init[index], batch.data[index], batch.low, batch.high,
                                                batch.fixed[index])))
            if report is not None:
                report(stop, len(batch))
            else:
                progress.check_deadline()
        count = len(batch)
        return _results(np.concatenate([np.asarray(p.pars) for p in parts])[:count],
                        np.concatenate([np.asarray(p.value) for p in parts])[:count],
                        np.concatenate([np.asarray(p.hessian) for p in parts])[:count],
                        np.concatenate([np.asarray(p.converged) for p in parts])[:count])

    def _stepwise(self, batch: FitBatch, init: np.ndarray, report: Callable[[int, int], None] | None) -> FitResults:
        value_grad = self._compiled.get_or_build("stepwise", self._build_stepwise)
        rows = []
        for k in range(len(batch)):
            data = jnp.asarray(batch.data[k], dtype=jnp.float64)

            def evaluate(x: np.ndarray, data: jax.Array = data) -> tuple[float, np.ndarray]:
                value, grad = value_grad(x, data)
                return float(value), np.asarray(grad)

            def hessian(x: np.ndarray, free: np.ndarray, precise: bool, evaluate: Callable = evaluate) -> np.ndarray:
                return newton.finite_difference_hessian(lambda p: evaluate(p)[1], x, batch.low, batch.high, free,
                                                        precise)

            rows.append(newton.stepwise(evaluate, hessian, init[k], batch.low, batch.high, batch.fixed[k],
                                        check=progress.check_deadline))
            if report is not None:
                report(k + 1, len(batch))
        return _results([r.pars for r in rows], [r.value for r in rows], [r.hessian for r in rows],
                        [r.converged for r in rows])

    def _pyhf_fits(self, batch: FitBatch, optimizer: Optimizer, do_grad: bool | None,
                   report: Callable[[int, int], None] | None) -> FitResults:
        # One optimizer object per call: pyhf's global one is never switched per request.
        fitter = pyhf.optimize.minuit_optimizer() if optimizer == "minuit" else pyhf.optimize.scipy_optimizer()
        bounds = np.stack([batch.low, batch.high], axis=1).tolist()
        count = len(batch)
        pars, values = np.array(batch.init, dtype=np.float64), np.full(count, np.nan)
        converged, message = np.zeros(count, dtype=bool), ""
        for k in range(count):
            fixed_vals = [(int(i), float(batch.init[k, i])) for i in np.flatnonzero(batch.fixed[k])]
            try:
                found, value = fitter.minimize(pyhf.infer.mle.twice_nll, jnp.asarray(batch.data[k], dtype=jnp.float64),
                                               self.model, batch.init[k].tolist(), bounds, fixed_vals,
                                               return_fitted_val=True, do_grad=do_grad)
                pars[k], values[k], converged[k] = np.asarray(found, dtype=np.float64), float(value), True
            except pyhf.exceptions.FailedMinimization as exc:
                message = str(exc)
            if report is not None:
                report(k + 1, count)
            else:
                progress.check_deadline()
        return FitResults(pars, values, None, converged, message)


def _default_code(kind: str) -> str | None:
    # pyhf's appliers' own defaults, used when a model's modifier_settings leave a type out.
    return {"normsys": "code1", "histosys": "code0"}.get(kind)


def _results(pars: Any, values: Any, hessians: Any, converged: Any) -> FitResults:
    return FitResults(np.asarray(pars, dtype=np.float64).reshape(len(values), -1),
                      np.asarray(values, dtype=np.float64), np.asarray(hessians, dtype=np.float64),
                      np.asarray(converged, dtype=bool))


class _BackgroundCompiler:
    """One thread per process that compiles queued models' programs, oldest first, at the lowest
    CPU priority (Linux gives each thread its own nice value). Requests never wait for it; a
    request that needs a program it is compiling shares that compile (single-flight). At exit
    the compile under way finishes and the queued ones are dropped (concurrent.futures' rule), so
    no XLA compile is cut off mid-way."""

    QUEUE_LIMIT = 8  # models waiting; more are dropped (their next large request compiles them)

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending: list[Future[None]] = []
        self.compiled = 0  # programs built here, for tests and logs

    def submit(self, fits: ModelFits) -> None:
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()]
            if len(self._pending) >= self.QUEUE_LIMIT:
                with fits._lock:
                    fits._scheduled = False
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="pyhf-background-compile",
                                                    initializer=_lowest_priority)
            self._pending.append(self._executor.submit(self._compile, fits))

    def _compile(self, fits: ModelFits) -> None:
        try:
            fits.program()
            self.compiled += 1
        except Exception:  # noqa: BLE001 - the next request that needs it compiles (and reports) it
            log.exception("background compile of a pyhf fit program failed")

    def join(self) -> None:
        """Wait until every queued compile is done (tests, benchmarks)."""
        with self._lock:
            pending = list(self._pending)
        wait(pending)


def _lowest_priority() -> None:
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:  # pragma: no cover - not permitted here: normal priority
            pass


_BACKGROUND = _BackgroundCompiler()


def wait_for_background_compiles() -> None:
    """Block until the background compiler's queue is empty."""
    _BACKGROUND.join()
