"""Values, gradients and Hessians of a :class:`~service.gradient.language.Formula` at points.

Expressions run as one compiled, batched function per (normalised text, backend, order, dtype,
batch-size bucket), kept in a small LRU cache: JAX as ``jit(vmap(...))``, TensorFlow as a
``tf.function`` over whole columns (every function of the language is elementwise, so the
gradient of the column sum is each point's gradient). A batch is padded up to its bucket so that
nearby sizes share one compiled function. Programs run point by point, eagerly, because their
Python ``if``/``for`` need concrete values.

:data:`TRACES` counts how often a compiled function was traced, so tests can prove that a
repeated request compiles nothing (a counter, not a clock).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service import backends
from service.compute import check_deadline
from service.errors import InvalidInput, LimitExceeded
from service.gradient.language import Formula, compile_expression, compile_program
from service.settings import Limits

backends.configure()

ORDERS = (1, 2)
CACHE_SIZE = 256  # compiled functions kept; each holds a small XLA executable or tf graph
TRACES: collections.Counter[str] = collections.Counter()  # backend → times a function was traced


@dataclass(frozen=True)
class Derivatives:
    """``value`` has shape ``()`` for one point or ``(N,)`` for a batch; ``gradient`` adds a last
    axis over ``variables``, ``hessian`` two (``None`` for order 1)."""

    variables: tuple[str, ...]
    value: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray | None
    batch: bool


# --- points ---------------------------------------------------------------------------------

def prepare_points(formula: Formula, at: Mapping[str, Any], dtype: str, limits: Limits,
                   ) -> tuple[list[np.ndarray], bool]:
    """Columns in ``formula.variables`` order (scalars broadcast to the batch) and whether the
    request is a batch. 422 names a missing or extra variable; 413 a batch over the limit."""
    missing = [v for v in formula.variables if v not in at]
    extra = [k for k in at if k not in formula.variables]
    if missing or extra:
        errors = [{"loc": ["body", "at", v], "msg": "missing: a free variable of the "
                   f"{'program' if formula.is_program else 'expression'} needs a value",
                   "type": "missing_variable"} for v in missing]
        errors += [{"loc": ["body", "at", k], "msg": "not a variable of the "
                    f"{'program' if formula.is_program else 'expression'}",
                    "type": "extra_variable"} for k in extra]
        said = "; ".join(filter(None, [missing and f"missing value for {', '.join(missing)}",
                                       extra and f"unknown variable {', '.join(extra)}"]))
        raise InvalidInput(f"{said} (variables: {', '.join(formula.variables) or 'none'}).",
                           errors=errors)
    arrays = {}
    for name in formula.variables:
        arr = np.asarray(at[name])
        if arr.ndim > 1 or arr.dtype.kind not in "fiub":
            raise InvalidInput(f"at.{name} must be a number or a flat list of numbers.",
                               errors=[{"loc": ["body", "at", name], "msg": "not a number or a "
                                        "flat list of numbers", "type": "shape"}])
        arrays[name] = arr
    lengths = {len(a) for a in arrays.values() if a.ndim == 1}
    if len(lengths) > 1:
        raise InvalidInput(
            "The lists in 'at' have different lengths: "
            + ", ".join(f"{k}: {len(a)}" for k, a in arrays.items() if a.ndim == 1) + ".",
            errors=[{"loc": ["body", "at", k], "msg": f"length {len(a)}", "type": "length"}
                    for k, a in arrays.items() if a.ndim == 1])
    batch = bool(lengths)
    count = lengths.pop() if batch else 1
    limit = "max_program_points" if formula.is_program else "max_points"
    maximum = getattr(limits, limit)
    if count > maximum:
        raise LimitExceeded(f"The batch has {count} points; at most {maximum} are accepted "
                            f"(limits.{limit}).", limit=limit, maximum=maximum, value=count)
    shape = (count,) if batch else ()
    columns = [np.broadcast_to(np.asarray(arrays[v], dtype=dtype), shape) for v in formula.variables]
    return columns, batch


def bucket_size(count: int) -> int:
    """The padded batch size: ``count`` rounded up to 4..8 × a power of two (≤ 25 % padding),
    so nearby batch sizes share a compiled function."""
    step = 1 << max(0, count.bit_length() - 3)
    return -(-count // step) * step


# --- compiled functions for expressions -----------------------------------------------------

_cache: collections.OrderedDict[tuple, Callable[..., Any]] = collections.OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    with _cache_lock:
        fn = _cache.get(key)
        if fn is not None:
            _cache.move_to_end(key)
            return fn
    fn = build()
    with _cache_lock:
        fn = _cache.setdefault(key, fn)  # a concurrent builder may have won; keep one
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return fn


def cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def _jax_derivatives(f: Callable[..., Any], n: int, order: int) -> Callable[..., Any]:
    """columns → (value, gradient (…, n), hessian (…, n, n) or None) for one point."""
    import jax
    import jax.numpy as jnp

    argnums = tuple(range(n))

    def derivatives(*cols: Any) -> tuple[Any, Any, Any]:
        value, grads = jax.value_and_grad(f, argnums=argnums)(*cols)
        gradient = jnp.stack(grads, axis=-1)
        hessian = None
        if order == 2:
            rows = jax.hessian(f, argnums=argnums)(*cols)
            hessian = jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)
        return value, gradient, hessian

    return derivatives


def _tf_derivatives(f: Callable[..., Any], n: int, order: int, tf: Any) -> Callable[..., Any]:
    """columns → (value, gradient, hessian) for points laid along the columns' axis.

    Every function of the language is elementwise, so d(sum of values)/d(column) is each
    point's derivative; the same holds one level up for the Hessian.
    """
    zero = tf.UnconnectedGradients.ZERO

    def derivatives(*cols: Any) -> tuple[Any, Any, Any]:
        cols = list(cols)
        shape = tf.shape(cols[0]) if cols else ()
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(cols)
            with tf.GradientTape() as inner:
                inner.watch(cols)
                value = tf.broadcast_to(f(*cols), shape)  # a constant formula still has a shape
                total = tf.reduce_sum(value)
            grads = inner.gradient(total, cols, unconnected_gradients=zero) if n else []
            grad_sums = [tf.reduce_sum(g) for g in grads]
        gradient = tf.stack(grads, axis=-1) if n else tf.zeros(tf.concat([shape, [0]], 0), value.dtype)
        hessian = None
        if order == 2:
            rows = [outer.gradient(s, cols, unconnected_gradients=zero) for s in grad_sums]
            hessian = (tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2) if n
                       else tf.zeros(tf.concat([shape, [0, 0]], 0), value.dtype))
        del outer
        return value, gradient, hessian

    return derivatives


def _compiled_expression(formula: Formula, backend: str, order: int, dtype: str,
                         bucket: int | None) -> Callable[..., Any]:
    """The cached batched function; ``bucket`` None means one unbatched point."""
    n = len(formula.variables)
    key = (formula.key, backend, order, dtype, bucket)

    def build_jax() -> Callable[..., Any]:
        import jax

        one_point = _jax_derivatives(formula.to_callable("jax", dtype), n, order)

        def traced(*cols: Any) -> Any:
            TRACES["jax"] += 1  # runs only while jax traces, never on a cached call
            return (jax.vmap(one_point) if bucket is not None else one_point)(*cols)

        return jax.jit(traced)

    def build_tf() -> Callable[..., Any]:
        tf = backends.tensorflow()
        columns = _tf_derivatives(formula.to_callable("tensorflow", dtype), n, order, tf)
        shape = [bucket] if bucket is not None else []

        def traced(*cols: Any) -> Any:
            TRACES["tensorflow"] += 1  # runs only while tf.function traces
            return columns(*cols)

        spec = [tf.TensorSpec(shape, tf.as_dtype(dtype))] * n
        return tf.function(traced, input_signature=spec, reduce_retracing=True)

    return _cached(key, build_jax if backend == "jax" else build_tf)


def _no_variables(formula: Formula, backend: str, dtype: str, order: int) -> tuple[Any, Any, Any]:
    """A formula without variables: its constant value, empty derivatives."""
    value = np.asarray(formula.to_callable(backend, dtype)(), dtype=dtype)
    return value, np.zeros(0, dtype), np.zeros((0, 0), dtype) if order == 2 else None


def _expression_derivatives(formula: Formula, columns: list[np.ndarray], batch: bool, order: int,
                            backend: str, dtype: str) -> tuple[Any, Any, Any]:
    if not formula.variables:
        return _no_variables(formula, backend, dtype, order)  # no variables: never a batch
    count = len(columns[0]) if batch else None
    bucket = bucket_size(count) if batch else None
    if batch and bucket != count:  # pad with the last point: harmless values, dropped below
        columns = [np.pad(c, (0, bucket - count), mode="edge") for c in columns]
    fn = _compiled_expression(formula, backend, order, dtype, bucket)
    value, gradient, hessian = fn(*columns)
    cut = slice(0, count) if batch else ...
    return (np.asarray(value)[cut], np.asarray(gradient)[cut],
            None if hessian is None else np.asarray(hessian)[cut])


# --- programs, point by point ---------------------------------------------------------------

def _program_derivatives(formula: Formula, columns: list[np.ndarray], batch: bool, order: int,
                         backend: str, dtype: str) -> tuple[Any, Any, Any]:
    n = len(formula.variables)
    f = formula.to_callable(backend, dtype)
    if backend == "jax":
        import jax.numpy as jnp

        one_point = _jax_derivatives(f, n, order)
        as_tensor = lambda v: jnp.asarray(v, dtype=dtype)  # noqa: E731
    else:
        tf = backends.tensorflow()
        one_point = _tf_derivatives(f, n, order, tf)
        as_tensor = lambda v: tf.constant(v, dtype=tf.as_dtype(dtype))  # noqa: E731
    points = np.stack(columns, axis=-1).reshape(-1, n) if n else np.zeros((1, 0), dtype)
    values, gradients, hessians = [], [], []
    for point in points:
        check_deadline()
        if n:
            value, gradient, hessian = one_point(*(as_tensor(v) for v in point))
        else:
            value, gradient, hessian = _no_variables(formula, backend, dtype, order)
        values.append(np.asarray(value))
        gradients.append(np.asarray(gradient))
        hessians.append(None if hessian is None else np.asarray(hessian))
    if not batch:
        return values[0], gradients[0], hessians[0]
    return (np.stack(values), np.stack(gradients),
            None if order == 1 else np.stack(hessians))


# --- the domain entry point -----------------------------------------------------------------

def compile_formula(*, expression: str | None, program: str | None, function: str | None,
                    limits: Limits) -> Formula:
    """The request's formula: exactly one of ``expression`` or ``program`` (+ ``function``)."""
    if (expression is None) == (program is None):
        raise InvalidInput("Send exactly one of 'expression' or 'program'.",
                           errors=[{"loc": ["body"], "msg": "exactly one of expression, program",
                                    "type": "one_of"}])
    if expression is not None:
        if function is not None:
            raise InvalidInput("'function' goes with 'program', not with 'expression'.",
                               errors=[{"loc": ["body", "function"], "msg": "only with program",
                                        "type": "extra"}])
        return compile_expression(expression, limits)
    if not function:
        raise InvalidInput("A 'program' needs 'function': the name of the def to differentiate.",
                           errors=[{"loc": ["body", "function"], "msg": "required with program",
                                    "type": "missing"}])
    return compile_program(program, function, limits)


def differentiate(formula: Formula, at: Mapping[str, Any], *, order: int = 1,
                  backend: str = "jax", dtype: str = "float64", limits: Limits) -> Derivatives:
    """Value, gradient and (order 2) Hessian of ``formula`` at one point or a batch."""
    if order not in ORDERS:
        raise InvalidInput(f"order must be 1 or 2, not {order!r}.",
                           errors=[{"loc": ["body", "order"], "msg": "1 or 2", "type": "enum"}])
    columns, batch = prepare_points(formula, at, dtype, limits)
    run = _program_derivatives if formula.is_program else _expression_derivatives
    value, gradient, hessian = run(formula, columns, batch, order, backend, dtype)
    return Derivatives(formula.variables, np.asarray(value), np.asarray(gradient),
                       None if hessian is None else np.asarray(hessian), batch)


def gradient(*, expression: str | None = None, program: str | None = None,
             function: str | None = None, at: Mapping[str, Any], order: int = 1,
             backend: str = "jax", dtype: str = "float64", limits: Limits) -> Derivatives:
    """Compile and differentiate: the whole ``/v1/gradient`` computation, run by the Runner."""
    formula = compile_formula(expression=expression, program=program, function=function,
                              limits=limits)
    return differentiate(formula, at, order=order, backend=backend, dtype=dtype, limits=limits)


def as_columns(result: Derivatives) -> dict[str, Any]:
    """The JSON shape: value, gradient as {variable: values}, hessian (rows/cols in variable order)."""
    out: dict[str, Any] = {
        "variables": list(result.variables),
        "value": result.value,
        "gradient": {v: result.gradient[..., i] for i, v in enumerate(result.variables)},
    }
    if result.hessian is not None:
        out["hessian"] = result.hessian
    return out
