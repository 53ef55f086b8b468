"""A bounded Newton minimiser: the fit behind every default /v1/pyhf request.

It minimises ``f(x)`` over a box ``low <= x <= high`` with some coordinates held fixed:

- each step solves ``H d = -g`` over the *free set* (coordinates neither fixed nor held on a
  bound by a gradient that points out of the box), with the Hessian's eigenvalues taken in
  absolute value and floored, so that a saddle or a flat direction still gives a descent step;
- the step is projected onto the box and halved until ``f`` decreases enough (Armijo); fixed
  coordinates never move (they may lie outside the box, e.g. a scanned parameter);
- it stops when the Newton decrement ``λ² = g·H⁻¹g`` over the free set (twice the decrease a
  full step would still bring) is below :data:`TOLERANCE`; the Hessian at the minimum, which
  the covariance needs, is the one the last step computed.

One step rule (:func:`direction`), two drivers:

- :func:`program`: the whole fit as one ``lax.while_loop``. The data, start, bounds and fixed
  mask are arguments, so a new dataset or a fit with the POI fixed at another value reuses the
  compiled program; it maps over datasets with ``jax.vmap`` (toys, batch fits).
- :func:`stepwise`: the same iterations driven from Python (the step rule in numpy) over a
  compiled value-and-gradient function, the Hessian from finite differences of that gradient
  (:func:`finite_difference_hessian`). It needs no whole-program compile, so it answers a new
  model's first requests sooner.

Plain JAX and numpy: nothing here knows pyhf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from labcrunch_service import backends

backends.configure()

#: A fit has converged when the Newton decrement (in units of the objective, e.g. −2 ln L)
#: is below this: the objective is then within TOLERANCE/2 of its minimum.
TOLERANCE = 1e-12
#: Where the decrease a step brings is lost in the objective's round-off, a fit that can no
#: longer step still counts as converged if its decrement is below this, relative to max(1, |f|).
ROUND_OFF_TOLERANCE = 1e-9
MAX_ITERATIONS = 100
LINE_SEARCH_HALVINGS = 40
ARMIJO = 1e-4
#: The smallest eigenvalue a step divides by, relative to the largest.
EIGENVALUE_FLOOR = 1e-12
#: The objective's own round-off, relative to |f|, forgiven by the Armijo test.
ROUND_OFF = 4 * float(np.finfo(np.float64).eps)

RUNNING, CONVERGED, STALLED, EXHAUSTED = 0, 1, 2, 3


class NewtonResult(NamedTuple):
    """The answer of one fit (arrays gain a leading axis when the program is vmapped)."""

    pars: jax.Array
    value: jax.Array  # f at pars
    hessian: jax.Array  # of f at pars (every coordinate; rows of fixed ones included)
    iterations: jax.Array
    converged: jax.Array  # bool
    decrement: jax.Array  # the last Newton decrement


def direction(x: Any, g: Any, h: Any, low: Any, high: Any, fixed: Any, xp: Any = jnp) -> tuple[Any, Any]:
    """The Newton step over the free set and its decrement ``−g·d`` (≥ 0); ``xp`` is
    ``jax.numpy`` (inside the program) or ``numpy`` (the stepwise loop: nothing to compile)."""
    held = fixed | ((x <= low) & (g > 0)) | ((x >= high) & (g < 0))
    free = ~held
    # Held coordinates get a unit diagonal and no coupling: their step is 0.
    masked = xp.where(free[:, None] & free[None, :], h, 0.0) + xp.diag(xp.where(free, 0.0, 1.0))
    gradient = xp.where(free, g, 0.0)
    eigenvalues, vectors = xp.linalg.eigh(masked)
    magnitude = xp.abs(eigenvalues)
    floor = EIGENVALUE_FLOOR * xp.max(magnitude) + np.finfo(np.float64).tiny
    step = -(vectors @ ((vectors.T @ gradient) / xp.maximum(magnitude, floor)))
    step = xp.where(free, step, 0.0)
    return step, -xp.dot(gradient, step)


def _sufficient(f: Any, f_new: Any, g: Any, moved: Any, xp: Any = jnp) -> Any:
    """Armijo's test on a projected step (NaN fails), forgiving the objective's round-off."""
    return f_new <= f + ARMIJO * xp.dot(g, moved) + ROUND_OFF * xp.abs(f)


def _stop_status(decrement: Any, value: Any, stepped: Any, iterations: Any, xp: Any = jnp) -> Any:
    """RUNNING after a step; else CONVERGED (a decrement below TOLERANCE, or one lost in the
    objective's round-off), EXHAUSTED (MAX_ITERATIONS steps taken) or STALLED (no step decreases
    the objective enough although the decrement is large)."""
    close = decrement <= ROUND_OFF_TOLERANCE * xp.maximum(1.0, xp.abs(value))
    stopped = xp.where(iterations >= MAX_ITERATIONS, EXHAUSTED, STALLED)
    status = xp.where(decrement <= TOLERANCE, CONVERGED,
                      xp.where(stepped, RUNNING, xp.where(close, CONVERGED, stopped)))
    return status.astype(xp.int32)


def program(value: Callable[[jax.Array, jax.Array], jax.Array],
            value_grad_hessian: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]],
            ) -> Callable[..., NewtonResult]:
    """``minimize(x0, data, low, high, fixed) -> NewtonResult`` as one traceable function.

    ``value(x, data)`` is the objective; ``value_grad_hessian(x, data)`` gives it with its
    gradient and Hessian. Jit it (and vmap it over ``x0``, ``data``, ``fixed`` for batches).
    """

    def minimize(x0: jax.Array, data: jax.Array, low: jax.Array, high: jax.Array,
                 fixed: jax.Array) -> NewtonResult:
        # Each iteration evaluates the Hessian once, at the point it starts from, and stops
        # there when that point has converged: the Hessian returned is the one at the answer,
        # and XLA compiles value_grad_hessian once (a copy outside the loop would double it).
        def running(state: tuple) -> jax.Array:
            return state[5] == RUNNING

        def iterate(state: tuple) -> tuple:
            x, _, _, iterations, _, _ = state
            f, g, h = value_grad_hessian(x, data)
            step, decrement = direction(x, g, h, low, high, fixed)
            wanted = (decrement > TOLERANCE) & (iterations < MAX_ITERATIONS)

            def shorter(search: tuple) -> jax.Array:
                _, trial, f_trial, halvings = search
                return wanted & ~_sufficient(f, f_trial, g, trial - x) & (halvings < LINE_SEARCH_HALVINGS)

            def halve(search: tuple) -> tuple:
                t, _, _, halvings = search
                t = 0.5 * t
                trial = jnp.where(fixed, x, jnp.clip(x + t * step, low, high))  # fixed may lie outside
                return t, trial, value(trial, data), halvings + 1

            # Starts at t = 2 with a failing value, so the first trial (t = 1) is evaluated
            # inside the loop: one copy of `value` in the compiled program.
            search = (jnp.asarray(2.0, x.dtype), x, jnp.asarray(jnp.nan, x.dtype), -1)
            _, trial, f_trial, _ = lax.while_loop(shorter, halve, search)
            stepped = wanted & _sufficient(f, f_trial, g, trial - x)
            status = _stop_status(decrement, f, stepped, iterations)
            return (jnp.where(stepped, trial, x), f, h, iterations + stepped.astype(iterations.dtype),
                    decrement, status)

        n = x0.shape[-1]
        start = (x0, jnp.asarray(jnp.nan, x0.dtype), jnp.zeros((n, n), x0.dtype), jnp.asarray(0, jnp.int32),
                 jnp.asarray(jnp.inf, x0.dtype), jnp.asarray(RUNNING, jnp.int32))
        x, f, h, iterations, decrement, status = lax.while_loop(running, iterate, start)
        return NewtonResult(x, f, h, iterations, status == CONVERGED, decrement)

    return minimize


def stepwise(value_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
             hessian: Callable[[np.ndarray, np.ndarray, bool], np.ndarray],
             x0: np.ndarray, low: np.ndarray, high: np.ndarray, fixed: np.ndarray,
             check: Callable[[], None] | None = None) -> NewtonResult:
    """The iterations of :func:`program`, driven from Python (numpy in and out).

    ``value_grad(x)`` gives the objective and its gradient, ``hessian(x, free, precise)`` its
    Hessian (rows and columns of non-free coordinates may be anything): the steps use a cheap
    one (``precise`` False), the answer a precise one at the minimum. ``check`` runs between
    iterations (a deadline check).
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=bool)
    f, g = value_grad(x)
    h = hessian(x, ~fixed, False)
    iterations, status, decrement = 0, RUNNING, float("inf")
    while status == RUNNING:
        if check is not None:
            check()
        step, dec = direction(x, g, h, low, high, fixed, np)
        decrement = float(dec)
        stepped = False
        if decrement > TOLERANCE and iterations < MAX_ITERATIONS:
            t = 1.0
            for _ in range(LINE_SEARCH_HALVINGS + 1):
                trial = np.where(fixed, x, np.clip(x + t * step, low, high))
                f_trial, g_trial = value_grad(trial)
                if bool(_sufficient(f, f_trial, g, trial - x, np)):
                    stepped = True
                    break
                t *= 0.5
        status = int(_stop_status(decrement, f, stepped, iterations, np))
        if stepped:
            x, f, g = trial, f_trial, g_trial
            h = hessian(x, ~fixed, False)
            iterations += 1
    return NewtonResult(x, np.float64(f), hessian(x, ~fixed, True), np.int32(iterations),
                        np.bool_(status == CONVERGED), np.float64(decrement))


#: Relative finite-difference step of :func:`finite_difference_hessian`.
HESSIAN_STEP = 1e-3


def finite_difference_hessian(gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                              low: np.ndarray, high: np.ndarray, free: np.ndarray,
                              precise: bool = True) -> np.ndarray:
    """The Hessian from an exact gradient, column by column over the ``free`` coordinates.

    ``precise``: five-point central differences, or, where ``x ± 2h`` would leave the box,
    five-point one-sided ones into it: error O(h⁴) either way (~1e-10 relative for a smooth
    −2 ln L at h = 1e-3). Otherwise (a step's Hessian, half the gradient calls): two-point
    central or one-sided differences, O(h²) and O(h) (~1e-6, ~1e-3). Rows and columns of
    non-free coordinates are 0; the result is symmetrised.
    """
    n = x.size
    out = np.zeros((n, n))
    g0: np.ndarray | None = None
    for i in np.flatnonzero(free):
        h = HESSIAN_STEP * max(1.0, abs(float(x[i])))

        def g_at(offset: float, i: int = i) -> np.ndarray:
            shifted = x.copy()
            shifted[i] += offset
            return np.asarray(gradient(shifted), dtype=np.float64)

        reach = 2 * h if precise else h
        if x[i] - reach >= low[i] and x[i] + reach <= high[i]:
            if precise:
                column = (8 * (g_at(h) - g_at(-h)) - (g_at(2 * h) - g_at(-2 * h))) / (12 * h)
            else:
                column = (g_at(h) - g_at(-h)) / (2 * h)
        else:
            side = 1.0 if x[i] + 4 * h <= high[i] else -1.0  # into the box
            if precise:
                weights = (-25.0, 48.0, -36.0, 16.0, -3.0)
                column = sum(w * g_at(side * k * h) for k, w in enumerate(weights)) / (12 * side * h)
            else:
                g0 = g_at(0.0) if g0 is None else g0
                column = (g_at(side * h) - g0) / (side * h)
        out[:, i] = column
    mask = np.asarray(free, dtype=bool)
    out = np.where(mask[:, None] & mask[None, :], out, 0.0)
    return 0.5 * (out + out.T)
