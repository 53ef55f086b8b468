"""Per-backend operation tables: the whitelisted functions on JAX, TensorFlow and numpy.

Each backend lists a few primitives (``sin``, ``exp``, ``where``, ...); everything else -- and
every function with a kink, a removable singularity or a convention to keep -- is written once
in :class:`BackendOps` in terms of those, so both backends compute the same values *and the
same derivatives* (tests check them against sympy and against each other). The conventions:

* ``x ** y`` in real arithmetic. A constant whole exponent (``x**2``, ``x**2.0``,
  ``power(x, 3)``) is an integer power: defined, with its derivatives, at every x. Otherwise
  ``x**y`` is NaN where x < 0 and y is not whole; ∂/∂x = y·x**(y-1); ∂/∂y = x**y·ln x, which is
  NaN for x < 0 (no real power is defined near a negative base as y varies) and 0 at x = 0.
  That is JAX's ``lax.pow``; TensorFlow's ``tf.pow`` differs (∂/∂y = 0 for x < 0, ∂/∂x = NaN
  for y = 0 at x = 0), so on TensorFlow the power is given those partials
  (:func:`tf.custom_gradient`), as is ``cbrt`` (∂ = 1/(3·cbrt(x)²), +inf at 0, as JAX's).
* At a kink the derivative is the average of the two sides where the function is symmetric
  about it: ``abs'(0) = 0``, ``sign' = floor' = 0``, ``maximum``/``minimum`` give each argument
  half at a tie (so ``clip`` too); ``relu'(0) = 0``; ``elu``/``selu`` at 0 take their x < 0
  side (JAX's definitions).
* ``sinc`` is numpy's sin(πx)/(πx), 1 at 0, with all its derivatives there.

numpy is internal: it finds a program's path and an expression's branch sides on plain numbers
(see :class:`~labcrunch_service.language.formula.Formula`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput
from labcrunch_service.language.vocabulary import FUNCTIONS

BACKENDS = ("jax", "tensorflow")
DTYPES = ("float32", "float64")
_SQRT_HALF = math.sqrt(0.5)
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # as jax.nn.selu, tf.nn.selu
#: Below this |πx|, sinc uses its Taylor polynomial (exact at 0, and free of the cancellation
#: that sin(t)/t's derivatives suffer near 0); its first left-out term is below 1e-21 there.
_SINC_TAYLOR_BELOW = 0.01
#: Whole constant exponents up to this size are integer powers (polynomials).
_INTEGER_EXPONENTS = 2**31
#: The primitives numpy and jax.numpy both spell as the language does.
_NUMPY_NAMES = ("sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh "
                "exp exp2 expm1 log log1p log2 log10 sqrt cbrt sign floor ceil where").split()
#: What every backend provides: ``power`` and ``cbrt`` differentiated by the rules above,
#: ``where`` with a boolean condition, ``stop_gradient`` the identity with derivative 0.
PRIMITIVES = frozenset(_NUMPY_NAMES) | {"sigmoid", "softplus", "erf", "erfc", "erfinv", "lgamma",
                                        "digamma", "power", "stop_gradient"}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class BackendOps:
    """One backend's numbers: constants of the formula's dtype and the whitelisted functions."""

    def __init__(self, backend: str, dtype: str, primitives: dict[str, Callable[..., Any]],
                 tensor: Callable[[Any], Any], cast: Callable[[Any], Any],
                 integer_power: Callable[[Any, int], Any]) -> None:
        self.backend, self.dtype = backend, dtype
        self.tensor = tensor  # a number or tensor → a tensor of `dtype`
        self.cast = cast  # a boolean tensor → 1.0/0.0 of `dtype`
        self.integer_power = integer_power  # x ** n for a Python int n, exact derivatives at 0
        missing = PRIMITIVES - set(primitives)
        assert not missing, f"{backend} lacks the primitives {missing}"
        p = primitives
        select = p["where"]
        c = tensor

        def keep_nan(x: Any, value: Any) -> Any:
            return select(x != x, x, value)

        def maximum(a: Any, b: Any) -> Any:
            return select(a > b, a, select(b > a, b, (a + b) * 0.5))

        def minimum(a: Any, b: Any) -> Any:
            return select(a < b, a, select(b < a, b, (a + b) * 0.5))

        def absolute(x: Any) -> Any:
            return x * p["sign"](x)

        def elu_negative(x: Any) -> Any:  # expm1 of the x ≤ 0 side, never of a large x
            return p["expm1"](select(x > 0, c(0.0), x))

        def sinc(x: Any) -> Any:
            t = math.pi * x
            small = t * t < _SINC_TAYLOR_BELOW**2
            safe = select(small, c(1.0), t)
            t2 = t * t
            return select(small, 1.0 - t2 / 6.0 * (1.0 - t2 / 20.0 * (1.0 - t2 / 42.0)),
                          p["sin"](safe) / safe)

        def hypot(x: Any, y: Any) -> Any:
            # scaled by s (no overflow of x²), held constant: the expression does not depend on
            # s, so its derivatives are exact without differentiating s's kinks
            s = p["stop_gradient"](maximum(absolute(x), absolute(y)))
            finite = (s > 0) & (s < math.inf)
            safe = select(finite, s, c(1.0))
            u, v = x / safe, y / safe
            squares = select(finite, u * u + v * v, c(1.0))  # never sqrt'(0) in the unused side
            return select(finite, safe * p["sqrt"](squares), s)

        def logaddexp(x: Any, y: Any) -> Any:
            # ln(e^x + e^y) = m + ln(e^(x-m) + e^(y-m)) for any m, held constant
            m = p["stop_gradient"](maximum(x, y))
            finite = absolute(m) < math.inf
            ms = select(finite, m, c(0.0))
            a, b = p["exp"](x - ms), p["exp"](y - ms)
            rest = select(x >= y, (a - 1.0) + b, (b - 1.0) + a)  # e^0 - 1 = 0 exactly: log1p keeps the rest
            return select(finite, ms + p["log1p"](rest), m)

        def xlogy(x: Any, y: Any) -> Any:
            # 0 where x = 0 (for any y but NaN), else x·ln y; ∂x = ln y, ∂y = x / y
            zero_times_infinite_log = (x == 0) & ((y <= 0) | (y == math.inf))
            return x * p["log"](select(zero_times_infinite_log, c(1.0), y))

        def gamma(x: Any) -> Any:
            whole = p["floor"](x)
            odd = whole - 2.0 * p["floor"](whole * 0.5)  # 1 where Γ < 0 (x in (-1, 0), (-3, -2), ...)
            sign = select(x > 0, c(1.0), 1.0 - 2.0 * odd)
            return sign * p["exp"](p["lgamma"](x))

        def log(x: Any, base: Any = None) -> Any:
            return p["log"](x) if base is None else p["log"](x) / p["log"](base)

        def heaviside(x: Any, at_zero: Any = None) -> Any:
            at_zero = c(0.5) if at_zero is None else at_zero  # sympy's Heaviside(0)
            return keep_nan(x, select(x > 0, c(1.0), select(x < 0, c(0.0), at_zero)))

        composites = {
            "abs": absolute, "maximum": maximum, "minimum": minimum,
            "clip": lambda x, lo, hi: minimum(maximum(x, lo), hi),
            "relu": lambda x: keep_nan(x, select(x > 0, x, c(0.0))),
            "elu": lambda x: select(x > 0, x, elu_negative(x)),
            "selu": lambda x: _SELU_SCALE * select(x > 0, x, _SELU_ALPHA * elu_negative(x)),
            "swish": lambda x: x * p["sigmoid"](x),
            "silu": lambda x: x * p["sigmoid"](x),
            "square": lambda x: x * x,
            # the exact (erf) GELU; TensorFlow's own loses ~1e-9 in float64
            "gelu": lambda x: 0.5 * x * (1.0 + p["erf"](x * _SQRT_HALF)),
            "where": lambda cond, a, b: select(cond != 0, a, b),
            "log": log, "heaviside": heaviside, "sinc": sinc, "hypot": hypot,
            "logaddexp": logaddexp, "xlogy": xlogy, "gamma": gamma,
            "factorial": lambda x: gamma(x + 1.0),
            "power": self.power,
            "cot": lambda x: 1.0 / p["tan"](x), "sec": lambda x: 1.0 / p["cos"](x),
            "csc": lambda x: 1.0 / p["sin"](x), "coth": lambda x: 1.0 / p["tanh"](x),
            "sech": lambda x: 1.0 / p["cosh"](x), "csch": lambda x: 1.0 / p["sinh"](x),
            # sympy's acot: arctan(1/x), in (-π/2, π/2], written to be smooth through x = 0
            "arccot": lambda x: select(x >= 0, math.pi / 2 - p["arctan"](x),
                                       -math.pi / 2 - p["arctan"](x)),
            "arcsec": lambda x: p["arccos"](1.0 / x), "arccsc": lambda x: p["arcsin"](1.0 / x),
            "arccoth": lambda x: p["arctanh"](1.0 / x), "arcsech": lambda x: p["arccosh"](1.0 / x),
            "arccsch": lambda x: p["arcsinh"](1.0 / x),
            "deg2rad": lambda x: x * (math.pi / 180.0), "rad2deg": lambda x: x * (180.0 / math.pi),
        }
        self._real_power = p["power"]
        self.functions = {**{k: v for k, v in p.items() if k in FUNCTIONS}, **composites}
        missing = set(FUNCTIONS) - set(self.functions)
        assert not missing, f"{backend} lacks {missing}"

    def power(self, x: Any, y: Any) -> Any:
        """``x ** y`` by the language's rule: a whole constant exponent (a Python number) is an
        integer power, anything else the real power with its partials (see the module)."""
        if _is_number(y) and float(y).is_integer() and abs(y) <= _INTEGER_EXPONENTS:
            return self.integer_power(self.tensor(x), int(y))
        return self._real_power(self.tensor(x), self.tensor(y))

    def call(self, name: str, args: list[Any]) -> Any:
        """The whitelisted function ``name`` on ``args`` (numbers or tensors)."""
        if name == "power":
            return self.power(*args)
        return self.functions[name](*(self.tensor(a) for a in args))


@functools.cache
def backend_ops(backend: str, dtype: str) -> BackendOps:
    """The operation table of ``backend`` ("jax", "tensorflow"; "numpy" internally) at ``dtype``."""
    if dtype not in DTYPES:
        raise InvalidInput(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.",
                           errors=[{"loc": ["dtype"], "msg": "unknown dtype", "type": "enum"}])
    if backend == "jax":
        return _jax_ops(dtype)
    if backend == "tensorflow":
        return _tensorflow_ops(dtype)
    if backend == "numpy":  # internal: finding a program's path, see Formula.path
        return _numpy_ops(dtype)
    raise InvalidInput(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}.",
                       errors=[{"loc": ["backend"], "msg": "unknown backend", "type": "enum"}])


def _jax_ops(dtype: str) -> BackendOps:
    import jax
    import jax.numpy as jnp
    from jax.scipy import special

    from labcrunch_service import backends

    backends.configure()
    dt = jnp.dtype(dtype)
    primitives = {n: getattr(jnp, n) for n in _NUMPY_NAMES}
    primitives.update(
        sigmoid=jax.nn.sigmoid, softplus=jax.nn.softplus, power=jnp.power,
        stop_gradient=jax.lax.stop_gradient,
        erf=special.erf, erfc=special.erfc, erfinv=special.erfinv, lgamma=special.gammaln,
        digamma=special.digamma,
    )

    return BackendOps("jax", dtype, primitives,
                      tensor=lambda v: jnp.asarray(v, dtype=dt),
                      cast=lambda b: jnp.asarray(b, dtype=dt),
                      integer_power=lambda x, n: x**n)  # lax.integer_pow: a polynomial


def _numpy_ops(dtype: str) -> BackendOps:
    from scipy import special

    dt = np.dtype(dtype)
    primitives = {n: getattr(np, n) for n in _NUMPY_NAMES}
    primitives.update(
        sigmoid=special.expit, softplus=lambda x: np.logaddexp(0, x), power=np.power,
        stop_gradient=lambda x: x,
        erf=special.erf, erfc=special.erfc, erfinv=special.erfinv, lgamma=special.gammaln,
        digamma=special.digamma,
    )
    return BackendOps("numpy", dtype, primitives, tensor=lambda v: np.asarray(v, dtype=dt),
                      cast=lambda b: np.asarray(b, dtype=dt),
                      integer_power=np.power)


def _tensorflow_ops(dtype: str) -> BackendOps:
    from labcrunch_service import backends

    tf = backends.tensorflow()
    dt = tf.as_dtype(dtype)
    ln2, ln10 = math.log(2.0), math.log(10.0)
    primitives = {
        "sin": tf.sin, "cos": tf.cos, "tan": tf.tan, "arcsin": tf.asin, "arccos": tf.acos,
        "arctan": tf.atan, "arctan2": tf.atan2, "sinh": tf.sinh, "cosh": tf.cosh, "tanh": tf.tanh,
        "arcsinh": tf.asinh, "arccosh": tf.acosh, "arctanh": tf.atanh, "exp": tf.exp,
        "exp2": lambda x: tf.pow(tf.constant(2.0, dtype=dt), x),
        "expm1": tf.math.expm1, "log": tf.math.log, "log1p": tf.math.log1p,
        "log2": lambda x: tf.math.log(x) / ln2, "log10": lambda x: tf.math.log(x) / ln10,
        "sqrt": tf.sqrt, "sign": tf.sign, "floor": tf.floor, "ceil": tf.math.ceil, "where": tf.where,
        "sigmoid": tf.sigmoid, "softplus": tf.math.softplus, "erf": tf.math.erf,
        "erfc": tf.math.erfc, "erfinv": tf.math.erfinv, "lgamma": tf.math.lgamma,
        "digamma": tf.math.digamma, "stop_gradient": tf.stop_gradient,
    }

    def tensor(v: Any) -> Any:
        if isinstance(v, tf.Tensor | tf.Variable) and v.dtype == dt:
            return v
        return tf.cast(v, dt) if isinstance(v, tf.Tensor | tf.Variable) else tf.constant(v, dtype=dt)

    def summed_to(gradient: Any, like: Any) -> Any:
        """``gradient`` summed over the axes ``like`` was broadcast along."""
        if gradient.shape == like.shape:
            return gradient
        _, axes = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(gradient), s1=tf.shape(like))
        return tf.reshape(tf.reduce_sum(gradient, axes), tf.shape(like))

    def with_partials(value: Callable[..., Any],
                      partials: Callable[..., list[Any]]) -> Callable[..., Any]:
        """``value`` whose derivative in ``args[i]`` is ``partials(*args)[i]`` (written in
        differentiable operations, so second derivatives follow)."""
        @tf.custom_gradient
        def function(*args: Any) -> Any:
            def gradient(upstream: Any) -> list[Any]:
                return [summed_to(upstream * d, a) for d, a in zip(partials(*args), args, strict=True)]

            return value(*args), gradient

        return function

    # lax.pow's and jnp.cbrt's partials (see the module); they call the functions themselves
    power = with_partials(tf.pow, lambda x, y: [
        y * power(x, y - 1.0), power(x, y) * tf.math.log(tf.where(x == 0, tf.ones_like(x), x))])
    cbrt = with_partials(lambda x: tf.sign(x) * tf.pow(tf.abs(x), 1.0 / 3.0),
                         lambda x: [integer_power(cbrt(x), -2) / 3.0])
    primitives.update(power=power, cbrt=cbrt)

    def integer_power(x: Any, n: int) -> Any:
        # ∂ x**n = n·x**(n-1), with x**0 = 1 exactly: its derivative is 0, even at x = 0
        if n == 0:
            return tf.ones_like(x)
        return with_partials(lambda v: tf.pow(v, float(n)), lambda v: [n * integer_power(v, n - 1)])(x)

    return BackendOps("tensorflow", dtype, primitives, tensor=tensor, cast=lambda b: tf.cast(b, dt),
                      integer_power=integer_power)
