"""Per-backend operation tables: the whitelisted functions on JAX, TensorFlow and numpy.

Each backend lists its primitives; the composite functions (swish, clip, gelu, ...) are written
once in :class:`BackendOps` in terms of those primitives, so every backend computes the same
formula. numpy is internal: it finds a program's path and an expression's branch sides on plain
numbers (see :class:`~labcrunch_service.language.formula.Formula`).
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
#: The primitives numpy and jax.numpy both spell as the language does.
_NUMPY_NAMES = ("sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh "
                "exp expm1 log log1p log2 log10 sqrt cbrt abs sign floor ceil minimum maximum power "
                "where").split()


class BackendOps:
    """One backend's numbers: constants of the formula's dtype and the whitelisted functions.

    Composite functions (swish, clip, ...) are written once here in terms of primitives, so both
    backends compute the same formula.
    """

    def __init__(self, backend: str, dtype: str, primitives: dict[str, Callable[..., Any]],
                 tensor: Callable[[Any], Any], cast: Callable[[Any], Any]) -> None:
        self.backend, self.dtype = backend, dtype
        self.tensor = tensor  # a number or tensor → a tensor of `dtype`
        self.cast = cast  # a boolean tensor → 1.0/0.0 of `dtype`
        p = primitives
        composites = {
            "swish": lambda x: x * p["sigmoid"](x),
            "silu": lambda x: x * p["sigmoid"](x),
            "clip": lambda x, lo, hi: p["minimum"](p["maximum"](x, lo), hi),
            "square": lambda x: x * x,
            # the exact (erf) GELU; TensorFlow's own loses ~1e-9 in float64
            "gelu": lambda x: 0.5 * x * (1.0 + p["erf"](x * _SQRT_HALF)),
            "where": lambda c, a, b: p["where"](c != 0, a, b),
        }
        self.functions = {**p, **composites}
        missing = set(FUNCTIONS) - set(self.functions)
        assert not missing, f"{backend} lacks {missing}"


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
        sigmoid=jax.nn.sigmoid, relu=jax.nn.relu, elu=jax.nn.elu, selu=jax.nn.selu,
        softplus=jax.nn.softplus,
        erf=special.erf, erfc=special.erfc,
    )
    return BackendOps("jax", dtype, primitives,
                      tensor=lambda v: jnp.asarray(v, dtype=dt),
                      cast=lambda b: jnp.asarray(b, dtype=dt))


def _numpy_ops(dtype: str) -> BackendOps:
    from scipy import special

    dt = np.dtype(dtype)
    primitives = {n: getattr(np, n) for n in _NUMPY_NAMES}
    selu_alpha, selu_scale = 1.6732632423543772, 1.0507009873554805  # as jax.nn.selu, tf.nn.selu
    primitives.update(
        sigmoid=special.expit, relu=lambda x: np.maximum(x, 0), softplus=lambda x: np.logaddexp(0, x),
        elu=lambda x: np.where(x > 0, x, np.expm1(x)),
        selu=lambda x: selu_scale * np.where(x > 0, x, selu_alpha * np.expm1(x)),
        erf=special.erf, erfc=special.erfc,
    )
    return BackendOps("numpy", dtype, primitives, tensor=lambda v: np.asarray(v, dtype=dt),
                      cast=lambda b: np.asarray(b, dtype=dt))


def _tensorflow_ops(dtype: str) -> BackendOps:
    from labcrunch_service import backends

    tf = backends.tensorflow()
    dt = tf.as_dtype(dtype)
    ln2, ln10 = math.log(2.0), math.log(10.0)
    primitives = {
        "sin": tf.sin, "cos": tf.cos, "tan": tf.tan, "arcsin": tf.asin, "arccos": tf.acos,
        "arctan": tf.atan, "arctan2": tf.atan2, "sinh": tf.sinh, "cosh": tf.cosh, "tanh": tf.tanh,
        "arcsinh": tf.asinh, "arccosh": tf.acosh, "arctanh": tf.atanh, "exp": tf.exp,
        "expm1": tf.math.expm1, "log": tf.math.log, "log1p": tf.math.log1p,
        "log2": lambda x: tf.math.log(x) / ln2, "log10": lambda x: tf.math.log(x) / ln10,
        "sqrt": tf.sqrt, "cbrt": lambda x: tf.sign(x) * tf.pow(tf.abs(x), 1.0 / 3.0),
        "abs": tf.abs, "sign": tf.sign, "floor": tf.floor, "ceil": tf.math.ceil,
        "minimum": tf.minimum, "maximum": tf.maximum, "power": tf.pow, "where": tf.where,
        "sigmoid": tf.sigmoid, "relu": tf.nn.relu, "elu": tf.nn.elu, "selu": tf.nn.selu,
        "softplus": tf.math.softplus,
        "erf": tf.math.erf, "erfc": tf.math.erfc,
    }

    def tensor(v: Any) -> Any:
        if isinstance(v, tf.Tensor | tf.Variable) and v.dtype == dt:
            return v
        return tf.cast(v, dt) if isinstance(v, tf.Tensor | tf.Variable) else tf.constant(v, dtype=dt)

    return BackendOps("tensorflow", dtype, primitives, tensor=tensor, cast=lambda b: tf.cast(b, dt))
