"""Values, gradients and Hessians of a :class:`~labcrunch_service.language.Formula` at points.

:func:`gradient` is the whole ``/v1/gradient`` computation (compile the text, differentiate at
the points). Errors name fields relative to its arguments (``["at", "x"]``, ``["expression"]``);
the router roots them in the request.

Expressions run as one compiled, batched function per (normalised text, backend, order, dtype,
batch-size bucket), kept in a small LRU cache: JAX as ``jit(vmap(...))``, TensorFlow as a
``tf.function`` over whole columns (every function of the language is elementwise, so the
gradient of the column sum is each point's gradient). A batch is padded up to its bucket so that
nearby sizes share one compiled function.

Programs take Python ``if``/``for`` decisions on concrete values, so they are first run point by
point on plain numbers to find each point's *path* (branches taken, loop bounds); the points that
share a path are then differentiated together by a function compiled for that path (JAX), cached
like an expression with the path in its key, or eagerly (TensorFlow: small batches run faster
eagerly than through a tf.function traced per path).

Compiled functions count their traces in ``cache.TRACES["gradient.jax"]`` and
``["gradient.tensorflow"]``, so tests can prove that a repeated request compiles nothing (a
counter, not a clock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from labcrunch_service import backends
from labcrunch_service.cache import LruCache, bucket_size, counting_traces
from labcrunch_service.compute import exchange
from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.gradient.types import Derivatives
from labcrunch_service.language import Formula, compile_expression, compile_program, normalized_keys
from labcrunch_service.progress import check_deadline, report
from labcrunch_service.settings import Limits, Settings

backends.configure()

ORDERS = (1, 2)
MAX_COMPILED_PATHS = 8  # per program request; points on rarer paths are evaluated eagerly
#: Largest formula (interpreted operations: an expression's nodes, a program path's operations)
#: that JAX or TensorFlow compiles, per order. Compile time grows faster than the formula (XLA
#: compiles a 200-trip loop of sin()'s Hessian in ~40 s, 400 trips in ~200 s) and a compile
#: cannot be interrupted at the wall time; evaluated eagerly the same path takes a fraction of
#: a second.
MAX_COMPILED_OPERATIONS = {1: 2_000, 2: 200}
EAGER_CHUNK = 131_072  # points per eager evaluation (memory: ~8 bytes x points x operations x 4)
#: JAX on a CPU computes on a numpy array in place when its data is aligned to this many bytes,
#: and copies it otherwise.
HOST_ALIGNMENT = 64


# --- points ---------------------------------------------------------------------------------

def prepare_points(formula: Formula, at: Mapping[str, Any], dtype: str, limits: Limits,
                   order: int = 1) -> tuple[list[np.ndarray], bool]:
    """Columns in ``formula.variables`` order (scalars broadcast to the batch) and whether the
    request is a batch. 422 names a missing or extra variable; 413 a batch, or an answer, over
    the limits. Names in ``at`` are read as the formula's are (Unicode NFKC)."""
    at = normalized_keys(at, ("at",))
    missing = [v for v in formula.variables if v not in at]
    extra = [k for k in at if k not in formula.variables]
    if missing or extra:
        errors = [{"loc": ["at", v], "msg": "missing: a free variable of the "
                   f"{'program' if formula.is_program else 'expression'} needs a value",
                   "type": "missing_variable"} for v in missing]
        errors += [{"loc": ["at", k], "msg": "not a variable of the "
                    f"{'program' if formula.is_program else 'expression'}",
                    "type": "extra_variable"} for k in extra]
        said = "; ".join(filter(None, [missing and f"missing value for {', '.join(missing[:20])}",
                                       extra and f"unknown variable {', '.join(extra[:20])}"]))
        raise InvalidInput(f"{said} (variables: {', '.join(formula.variables) or 'none'}).",
                           errors=errors[:40])
    arrays = {}
    for name in formula.variables:
        arr = np.asarray(at[name])
        if arr.ndim > 1 or arr.dtype.kind not in "fiub":
            raise InvalidInput(f"at.{name} must be a number or a flat list of numbers.",
                               errors=[{"loc": ["at", name], "msg": "not a number or a "
                                        "flat list of numbers", "type": "shape"}])
        arrays[name] = arr
    lengths = {len(a) for a in arrays.values() if a.ndim == 1}
    if len(lengths) > 1:
        raise InvalidInput(
            "The lists in 'at' have different lengths: "
            + ", ".join(f"{k}: {len(a)}" for k, a in arrays.items() if a.ndim == 1) + ".",
            errors=[{"loc": ["at", k], "msg": f"length {len(a)}", "type": "length"}
                    for k, a in arrays.items() if a.ndim == 1])
    batch = bool(lengths)
    count = lengths.pop() if batch else 1
    limit = "max_program_points" if formula.is_program else "max_points"
    maximum = getattr(limits, limit)
    if count > maximum:
        raise LimitExceeded(f"The batch has {count} points; at most {maximum} are accepted "
                            f"(limits.{limit}).", limit=limit, maximum=maximum, value=count)
    n = len(formula.variables)
    values = count * (1 + n + (n * n if order == 2 else 0))
    if values > limits.max_result_values:
        raise LimitExceeded(f"The answer would hold {values} numbers ({count} points x (1 + {n}"
                            f"{f' + {n}^2' if order == 2 else ''})); at most "
                            f"{limits.max_result_values} are allowed (limits.max_result_values).",
                            limit="max_result_values", maximum=limits.max_result_values, value=values)
    shape = (count,) if batch else ()
    columns = [np.broadcast_to(np.asarray(arrays[v], dtype=dtype), shape) for v in formula.variables]
    return columns, batch


# --- compiled functions for expressions -----------------------------------------------------

# compiled functions (each holds a small XLA executable or tf graph), and checked formulas
_cache: LruCache[Callable[..., Any]] = LruCache(name="gradient.compiled", setting="compile_cache_size")
_formulas: LruCache[Formula] = LruCache(name="gradient.formulas", setting="compile_cache_size")


def cache_clear() -> None:
    _cache.clear()
    _formulas.clear()


def _jax_derivatives(f: Callable[..., Any], n: int, order: int) -> Callable[..., Any]:
    """columns → (value, gradient (…, n), hessian (…, n, n) or None) for one point.

    The Hessian is built one column at a time, differentiating in one variable with the others
    held as constants: a variable that is not being varied then has no tangent at all, so a
    partial derivative that is NaN or infinite in it (∂/∂y of x**y at x < 0, d/dx sqrt(x) at 0)
    cannot turn 0 × NaN into NaN elsewhere, as ``jax.hessian``'s stacked tangents would.
    """
    import jax
    import jax.numpy as jnp

    argnums = tuple(range(n))

    def derivatives(*cols: Any) -> tuple[Any, Any, Any]:
        value, grads = jax.value_and_grad(f, argnums=argnums)(*cols)
        gradient = jnp.stack(grads, axis=-1)
        hessian = None
        if order == 2:
            def gradient_along(j: int) -> Callable[[Any], Any]:
                def partial(v: Any) -> Any:
                    return jnp.stack(jax.grad(f, argnums=argnums)(*cols[:j], v, *cols[j + 1:]), axis=-1)
                return partial

            columns = [jax.jvp(gradient_along(j), (cols[j],), (jnp.ones_like(cols[j]),))[1]
                       for j in range(n)]
            hessian = _symmetric(jnp.stack(columns, axis=-1), lambda h: jnp.swapaxes(h, -1, -2))
        return value, gradient, hessian

    return derivatives


def _symmetric(hessian: Any, transpose: Callable[[Any], Any]) -> Any:
    """(H + Hᵀ) / 2 (``transpose`` swaps the last two axes): the two mixed partials are computed
    along different paths and may differ in their last bits; an answer's Hessian is symmetric
    by construction on every backend."""
    return (hessian + transpose(hessian)) * 0.5


def _tf_derivatives(f: Callable[..., Any], n: int, order: int, tf: Any) -> Callable[..., Any]:
    """columns → (value, gradient, hessian) for points laid along the columns' axis.

    Every function of the language is elementwise, so d(sum of values)/d(column) is each
    point's derivative; the same holds one level up for the Hessian (whose rows, reverse mode
    over reverse mode, hold no tangent of the other variables to multiply a NaN partial by).
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
            hessian = (_symmetric(tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2),
                                  tf.linalg.matrix_transpose) if n
                       else tf.zeros(tf.concat([shape, [0, 0]], 0), value.dtype))
        del outer
        return value, gradient, hessian

    return derivatives


def _derivative_function(formula: Formula, backend: str, order: int, dtype: str,
                         path: tuple[Any, ...] | None, batched: bool) -> Callable[..., Any]:
    """columns → (value, gradient, hessian), neither traced nor compiled yet."""
    n = len(formula.variables)
    f = formula.to_callable(backend, dtype, path=path)
    if backend == "jax":
        import jax

        one_point = _jax_derivatives(f, n, order)
        return jax.vmap(one_point) if batched else one_point
    return _tf_derivatives(f, n, order, backends.tensorflow())  # columns are batches already


def _compiled(formula: Formula, backend: str, order: int, dtype: str, bucket: int | None,
              path: tuple[Any, ...] | None = None) -> Callable[..., Any]:
    """The cached compiled function; ``bucket`` None means one unbatched point; ``path`` the
    decisions a program replays (None for an expression)."""
    key = (formula.key, backend, order, dtype, bucket, path)

    def build() -> Callable[..., Any]:
        derivatives = _derivative_function(formula, backend, order, dtype, path, bucket is not None)
        traced = counting_traces(f"gradient.{backend}", derivatives)
        if backend == "jax":
            import jax

            return jax.jit(traced)
        tf = backends.tensorflow()
        spec = [tf.TensorSpec([bucket] if bucket is not None else [], tf.as_dtype(dtype))]
        return tf.function(traced, input_signature=spec * len(formula.variables))

    return _cache.get_or_build(key, build)


def _no_variables(formula: Formula, backend: str, dtype: str, order: int) -> tuple[Any, Any, Any]:
    """A formula without variables: its constant value, empty derivatives."""
    value = np.asarray(formula.to_callable(backend, dtype)(), dtype=dtype)
    return value, np.zeros(0, dtype), np.zeros((0, 0), dtype) if order == 2 else None


def _aligned_empty(count: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised 1-D array whose data starts on a HOST_ALIGNMENT boundary."""
    raw = np.empty(count * dtype.itemsize + HOST_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % HOST_ALIGNMENT
    return raw[start:start + count * dtype.itemsize].view(dtype)


def _bucket_column(column: np.ndarray, bucket: int) -> np.ndarray:
    """``column`` padded to ``bucket`` points with its last point (harmless values, dropped from
    the answer) into an aligned array that JAX then uses in place: lengthened where it lies
    when the request's block of shared memory has room after it, else in one copy; a column
    that is already both is passed as it is."""
    if len(column) == bucket and column.flags.c_contiguous and (
            column.ctypes.data % HOST_ALIGNMENT == 0):
        return column
    padded = exchange.padded(column, bucket)
    if padded is None:
        padded = _aligned_empty(bucket, column.dtype)
        padded[:len(column)] = column
    if bucket > len(column):
        padded[len(column):] = column[-1]
    return padded


def _run_compiled(formula: Formula, columns: list[np.ndarray], batch: bool, order: int,
                  backend: str, dtype: str, path: tuple[Any, ...] | None = None,
                  ) -> tuple[Any, Any, Any]:
    """Evaluate at the points through the cached compiled function of their bucket."""
    count = len(columns[0]) if batch else None
    bucket = bucket_size(count) if batch else None
    if batch and backend == "jax":
        columns = [_bucket_column(c, bucket) for c in columns]
    elif batch and bucket != count:
        columns = [np.pad(c, (0, bucket - count), mode="edge") for c in columns]
    value, gradient, hessian = _compiled(formula, backend, order, dtype, bucket, path)(*columns)
    cut = slice(0, count) if batch else ...
    return (np.asarray(value)[cut], np.asarray(gradient)[cut],
            None if hessian is None else np.asarray(hessian)[cut])


def _run_eager(formula: Formula, columns: list[np.ndarray], batch: bool, order: int,
               backend: str, dtype: str, path: tuple[Any, ...] | None = None,
               ) -> tuple[Any, Any, Any]:
    """Evaluate without compiling: TensorFlow programs (small batches run faster eagerly than
    through a tf.function traced per path), paths beyond ``MAX_COMPILED_PATHS`` and formulas
    over ``MAX_COMPILED_OPERATIONS``. Large batches go ``EAGER_CHUNK`` points at a
    time: eagerly, every operation's result (and residual) is a whole column in memory."""
    derivatives = _derivative_function(formula, backend, order, dtype, path, batch)
    tf = backends.tensorflow() if backend == "tensorflow" else None

    def run(cols: list[np.ndarray]) -> tuple[Any, Any, Any]:
        if tf is not None:
            cols = [tf.constant(c, dtype=tf.as_dtype(dtype)) for c in cols]
        value, gradient, hessian = derivatives(*cols)
        return np.asarray(value), np.asarray(gradient), None if hessian is None else np.asarray(hessian)

    count = len(columns[0]) if batch else 0
    if count <= EAGER_CHUNK:
        return run(columns)
    parts = []
    for start in range(0, count, EAGER_CHUNK):
        report(start, count, "points")
        parts.append(run([c[start:start + EAGER_CHUNK] for c in columns]))
    return tuple(None if part[0] is None else np.concatenate(part) for part in zip(*parts, strict=True))


def _expression_derivatives(formula: Formula, columns: list[np.ndarray], batch: bool, order: int,
                            backend: str, dtype: str) -> tuple[Any, Any, Any]:
    """One compiled function for the batch; with ``a if c else b``, one per combination of
    sides taken (found on numpy for the whole batch), so that only the side taken is
    differentiated, as ``jax.grad`` of the Python expression would."""
    if not formula.variables:
        return _no_variables(formula, backend, dtype, order)  # no variables: never a batch
    run = _run_compiled if _compiles(formula, backend, order, formula.operations) else _run_eager
    if not formula.branches:
        return run(formula, columns, batch, order, backend, dtype)
    conditions = formula.branch_conditions(columns, dtype)
    if not batch:
        return run(formula, columns, False, order, backend, dtype, tuple(conditions.tolist()))
    groups = [(path, rows, formula.operations) for path, rows in _groups_of(conditions)]
    return _run_groups(formula, columns, groups, order, backend, dtype)


def _compiles(formula: Formula, backend: str, order: int, operations: int) -> bool:
    """Whether a path is worth compiling: formulas over ``MAX_COMPILED_OPERATIONS`` would
    compile (an XLA executable, a traced and optimised tf graph) for longer than they take to
    evaluate eagerly -- and a compile cannot be stopped at the deadline, while an eager
    evaluation checks it between operations and chunks. TensorFlow programs (small batches)
    also run faster eagerly than through a tf.function traced per path."""
    if backend == "tensorflow" and formula.is_program:
        return False
    return operations <= MAX_COMPILED_OPERATIONS[order]


def _groups_of(conditions: np.ndarray) -> list[tuple[tuple[bool, ...], np.ndarray]]:
    """(sides taken, row indices) for each distinct row of a (points, branches) bool array."""
    # one integer code per row (a sort on integers is far quicker than np.unique(axis=0))
    if conditions.shape[1] <= 62:
        codes = conditions @ (1 << np.arange(conditions.shape[1], dtype=np.int64))
    else:
        codes = np.unique(conditions, axis=0, return_inverse=True)[1].ravel()
    if codes.min() == codes.max():
        return [(tuple(conditions[0].tolist()), np.arange(len(codes)))]
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.diff(codes[order])) + 1
    return [(tuple(conditions[rows[0]].tolist()), rows) for rows in np.split(order, starts)]


def _run_groups(formula: Formula, columns: list[np.ndarray],
                groups: list[tuple[tuple[Any, ...], np.ndarray, int]], order: int, backend: str,
                dtype: str) -> tuple[Any, Any, Any]:
    """Differentiate each group of points (rows of ``columns``) along its own path
    (``groups``: path, row indices, operations along the path)."""
    count, n = len(columns[0]), len(columns)
    value = np.empty(count, dtype)
    gradient = np.empty((count, n), dtype)
    hessian = np.empty((count, n, n), dtype) if order == 2 else None
    for rank, (path, index, operations) in enumerate(sorted(groups, key=lambda group: -len(group[1]))):
        check_deadline()
        # compiling costs ~0.1-0.3 s a path: the most common paths pay it, rare ones run eagerly
        compiled = rank < MAX_COMPILED_PATHS and _compiles(formula, backend, order, operations)
        run = _run_compiled if compiled else _run_eager
        v, g, h = run(formula, [c[index] for c in columns], True, order, backend, dtype, path)
        value[index], gradient[index] = v, g
        if hessian is not None:
            hessian[index] = h
    return value, gradient, hessian


def _undefined_where_the_value_is(value: Any, gradient: Any, hessian: Any) -> tuple[Any, Any, Any]:
    """NaN derivatives where the value is NaN (outside the function's domain: arccosh(-2),
    (-8)**0.5): the backends' derivative formulas would otherwise give numbers, different ones,
    for a function that is not there."""
    value, gradient = np.asarray(value), np.asarray(gradient)
    undefined = np.isnan(value)
    if not undefined.any():
        return value, gradient, hessian
    gradient = np.where(undefined[..., None], np.nan, gradient)
    if hessian is not None:
        hessian = np.where(undefined[..., None, None], np.nan, np.asarray(hessian))
    return value, gradient, hessian


# --- programs: grouped by the path each point takes -----------------------------------------

def _program_derivatives(formula: Formula, columns: list[np.ndarray], batch: bool, order: int,
                         backend: str, dtype: str) -> tuple[Any, Any, Any]:
    """Each point's path (its branches and loop bounds) is found on plain numbers first; the
    points that share a path are then differentiated together by one compiled function that
    replays it -- the same numbers as ``jax.grad`` of the Python function point by point,
    without paying JAX's eager dispatch for every operation."""
    if not formula.variables:
        return _no_variables(formula, backend, dtype, order)
    points = np.stack(columns, axis=-1).reshape(-1, len(columns))
    groups: dict[tuple[Any, ...], list[int]] = {}
    operations: dict[tuple[Any, ...], int] = {}
    for i, point in enumerate(points):
        report(i, len(points), "points")
        path, operations_on_path = formula.path(tuple(point), dtype)
        groups.setdefault(path, []).append(i)
        operations[path] = operations_on_path
    if not batch:
        (path,) = groups
        run = _run_compiled if _compiles(formula, backend, order, operations[path]) else _run_eager
        return run(formula, columns, False, order, backend, dtype, path)
    return _run_groups(formula, columns, [(path, np.asarray(rows), operations[path])
                                          for path, rows in groups.items()], order, backend, dtype)


# --- the domain entry point -----------------------------------------------------------------

def compile_formula(*, expression: str | None, program: str | None, function: str | None,
                    limits: Limits) -> Formula:
    """The request's formula: exactly one of ``expression`` or ``program`` (+ ``function``)."""
    if (expression is None) == (program is None):
        raise InvalidInput("Send exactly one of 'expression' or 'program'.",
                           errors=[{"loc": [], "msg": "exactly one of expression, program",
                                    "type": "one_of"}])
    if expression is not None:
        if function is not None:
            raise InvalidInput("'function' goes with 'program', not with 'expression'.",
                               errors=[{"loc": ["function"], "msg": "only with program",
                                        "type": "extra"}])
    elif not function:
        raise InvalidInput("A 'program' needs 'function': the name of the def to differentiate.",
                           errors=[{"loc": ["function"], "msg": "required with program",
                                    "type": "missing"}])
    # Checked formulas are kept too: parsing and checking cost more than a cached gradient
    # (0.1-0.3 ms). Keyed by the limits' values: every task brings its own copy of them.
    return _formulas.get_or_build(
        (expression, program, function, *vars(limits).values()),
        lambda: compile_expression(expression, limits) if expression is not None
        else compile_program(program, function, limits))


def differentiate(formula: Formula, at: Mapping[str, Any], *, order: int = 1,
                  backend: str = "jax", dtype: str = "float64", limits: Limits) -> Derivatives:
    """Value, gradient and (order 2) Hessian of ``formula`` at one point or a batch."""
    if order not in ORDERS:
        raise InvalidInput(f"order must be 1 or 2, not {order!r}.",
                           errors=[{"loc": ["order"], "msg": "1 or 2", "type": "enum"}])
    columns, batch = prepare_points(formula, at, dtype, limits, order)
    run = _program_derivatives if formula.is_program else _expression_derivatives
    value, gradient, hessian = _undefined_where_the_value_is(*run(formula, columns, batch, order,
                                                                  backend, dtype))
    return Derivatives(formula.variables, np.asarray(value), np.asarray(gradient),
                       None if hessian is None else np.asarray(hessian), batch, formula.constants)


def gradient(*, expression: str | None = None, program: str | None = None,
             function: str | None = None, at: Mapping[str, Any], order: int = 1,
             backend: str = "jax", dtype: str = "float64", limits: Limits) -> Derivatives:
    """Compile and differentiate: the whole ``/v1/gradient`` computation, run by the Runner."""
    formula = compile_formula(expression=expression, program=program, function=function,
                              limits=limits)
    return differentiate(formula, at, order=order, backend=backend, dtype=dtype, limits=limits)


def warmup(settings: Settings) -> None:
    """Compile the seed's first case, a scalar gradient, so the first request is quick."""
    warm = [b for b in ("jax", "tensorflow") if b == "jax" or (
        settings.load_tensorflow and backends.tensorflow_available())]
    for backend in warm:
        gradient(expression="(x - 1)**2", at={"x": 3.0}, backend=backend,
                 limits=settings.limits)
