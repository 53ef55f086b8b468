"""The optimizers /v1/minimize offers: hyper-parameters, defaults, and one build per backend.

Each optimizer has one documented set of hyper-parameters with one meaning, built with optax on
JAX and with ``tf.keras.optimizers`` on TensorFlow so that both backends take the same steps.
Where the two libraries spell a hyper-parameter differently, we follow Keras (the seed's
library) and map optax onto it:

- ``momentum``/``nesterov``: Keras keeps a velocity ``v = m·v − lr·g``; optax a trace
  ``t = g + m·t`` with update ``−lr·t`` (nesterov ``−lr·(g + m·t)``). Since ``v = −lr·t`` for a
  constant rate the updates are identical: ``optax.sgd(lr, momentum=m, nesterov=...)``.
- ``adam``/``adamw`` ``epsilon``: Keras adds ε to √v *before* bias correction (the "ε̂" of
  Kingma & Ba §2): ``lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)``; optax.adam adds it to √v̂ *after*.
  The two differ by the step-dependent factor √(1−β₂ᵗ), which no constant optax ``eps`` can
  express, so on JAX we build Adam from :func:`scale_by_adam_epsilon_hat` (Keras's formula as
  an optax transformation).
- ``adamw`` ``weight_decay``: both subtract ``lr·wd·x`` decoupled from the gradient.
- ``rmsprop``/``adagrad`` ``epsilon`` sits inside the square root in both (optax
  ``eps_in_sqrt=True``); the Adagrad accumulator starts at ``initial_accumulator_value`` in both.

``lbfgs`` (optax only) chooses its step by a zoom line search and takes no learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from labcrunch_service.errors import InvalidInput


@dataclass(frozen=True)
class HyperParameter:
    """One hyper-parameter: its default and the closed/open range a value must lie in."""

    default: float | int | bool
    doc: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # True: the value must be strictly above `low`
    high_open: bool = False  # True: the value must be strictly below `high`

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None when it is."""
        if isinstance(self.default, bool):
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if isinstance(self.default, int) and not float(value).is_integer():
            return "must be an integer"
        if not math.isfinite(value):
            return "must be finite"
        below = value <= self.low if self.low_open else value < self.low
        above = value >= self.high if self.high_open else value > self.high
        if below or above:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"must lie in {left}{self.low:g}, {self.high:g}{right}"
        return None


@dataclass(frozen=True)
class Optimizer:
    name: str
    summary: str
    default_learning_rate: float | None  # None: the optimizer takes no learning rate
    hyper_parameters: dict[str, HyperParameter]
    backends: tuple[str, ...] = ("jax", "tensorflow")


def _momentum(default: float) -> HyperParameter:
    return HyperParameter(default, "velocity decay per step", 0.0, 1.0, high_open=True)


_BETA_1 = HyperParameter(0.9, "decay of the first-moment (mean) estimate", 0.0, 1.0, high_open=True)
_BETA_2 = HyperParameter(0.999, "decay of the second-moment estimate", 0.0, 1.0, high_open=True)
_ADAM_EPSILON = HyperParameter(1e-7, "added to √v before bias correction (Keras's ε̂)", 0.0, low_open=True)

OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in (
        Optimizer("sgd", "x ← x − lr·g", 0.01, {}),
        Optimizer("momentum", "heavy-ball momentum: v ← m·v − lr·g; x ← x + v", 0.01,
                  {"momentum": _momentum(0.9)}),
        Optimizer("nesterov", "Nesterov momentum: v ← m·v − lr·g; x ← x + m·v − lr·g", 0.01,
                  {"momentum": _momentum(0.9)}),
        Optimizer("adam", "Adam (Kingma & Ba), ε as in Keras", 0.001,
                  {"beta_1": _BETA_1, "beta_2": _BETA_2, "epsilon": _ADAM_EPSILON}),
        Optimizer("adamw", "Adam with decoupled weight decay x ← x − lr·wd·x", 0.001,
                  {"beta_1": _BETA_1, "beta_2": _BETA_2, "epsilon": _ADAM_EPSILON,
                   "weight_decay": HyperParameter(0.004, "decoupled weight decay", 0.0)}),
        Optimizer("rmsprop", "v ← ρ·v + (1−ρ)·g²; x ← x − lr·g/√(v+ε)", 0.001,
                  {"rho": HyperParameter(0.9, "decay of the squared-gradient average", 0.0, 1.0,
                                         high_open=True),
                   "momentum": _momentum(0.0),
                   "epsilon": HyperParameter(1e-7, "added to v inside the square root", 0.0,
                                             low_open=True),
                   "centered": HyperParameter(False, "divide by the gradient's variance estimate")}),
        Optimizer("adagrad", "a ← a + g²; x ← x − lr·g/√(a+ε)", 0.001,
                  {"initial_accumulator_value": HyperParameter(0.1, "starting a", 0.0),
                   "epsilon": HyperParameter(1e-7, "added to a inside the square root", 0.0,
                                             low_open=True)}),
        Optimizer("lbfgs", "limited-memory BFGS with a zoom line search (no learning rate)", None,
                  {"memory_size": HyperParameter(10, "curvature pairs remembered", 1, 100)},
                  backends=("jax",)),
    )
}


def resolve(name: str, options: dict[str, Any], backend: str) -> tuple[Optimizer, dict[str, Any]]:
    """The optimizer called ``name`` and its hyper-parameters: defaults updated by ``options``.

    Unknown optimizers, unknown option keys and out-of-range values are InvalidInput (422).
    """
    optimizer = OPTIMIZERS.get(name)
    if optimizer is None:
        raise InvalidInput(
            f"Unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.",
            errors=[{"loc": ["body", "optimizer"], "msg": "unknown optimizer", "type": "enum"}],
        )
    if backend not in optimizer.backends:
        raise InvalidInput(
            f"The {name} optimizer is available on the {' and '.join(optimizer.backends)} "
            f"backend only, not on {backend}.",
            errors=[{"loc": ["body", "optimizer"], "msg": f"not available on {backend}",
                     "type": "unsupported"}],
        )
    errors = []
    for key, value in options.items():
        spec = optimizer.hyper_parameters.get(key)
        if spec is None:
            known = ", ".join(optimizer.hyper_parameters) or "none"
            errors.append({"loc": ["body", "options", key],
                           "msg": f"unknown option for {name} (known: {known})", "type": "unknown"})
        elif (why := spec.check(value)) is not None:
            errors.append({"loc": ["body", "options", key], "msg": why, "type": "value"})
    if errors:
        raise InvalidInput(
            "; ".join(f"options.{e['loc'][-1]}: {e['msg']}" for e in errors), errors=errors
        )
    resolved = {key: spec.default for key, spec in optimizer.hyper_parameters.items()}
    resolved.update(options)
    for key, spec in optimizer.hyper_parameters.items():  # 10 → 10.0 for floats, 3.0 → 3 for ints
        if not isinstance(spec.default, bool):
            resolved[key] = type(spec.default)(resolved[key])
    return optimizer, resolved


# --- JAX (optax) -------------------------------------------------------------------------------


class AdamEpsilonHatState(NamedTuple):
    count: Any  # steps taken so far (int32 scalar)
    mu: Any  # first-moment estimate, not bias-corrected
    nu: Any  # second-moment estimate, not bias-corrected


def scale_by_adam_epsilon_hat(beta_1: float, beta_2: float, epsilon: float):
    """Adam's direction with ε added to √v before bias correction, exactly as Keras computes it.

    ``√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)``, to be followed by ``optax.scale_by_learning_rate``.
    Works on one parameter array (the minimizer's vector of variables).
    """
    import jax.numpy as jnp
    import optax

    def init(params):
        return AdamEpsilonHatState(jnp.zeros([], jnp.int32), jnp.zeros_like(params), jnp.zeros_like(params))

    def update(grad, state, params=None):
        del params
        count = state.count + 1
        mu = beta_1 * state.mu + (1 - beta_1) * grad
        nu = beta_2 * state.nu + (1 - beta_2) * grad * grad
        t = count.astype(grad.dtype)
        scale = jnp.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        return scale * mu / (jnp.sqrt(nu) + epsilon), AdamEpsilonHatState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def build_optax(name: str, learning_rate: Any, hp: dict[str, Any]):
    """The optax transformation for ``name`` (``learning_rate`` may be a traced scalar)."""
    import optax

    if name == "sgd":
        return optax.sgd(learning_rate)
    if name in ("momentum", "nesterov"):
        return optax.sgd(learning_rate, momentum=hp["momentum"], nesterov=name == "nesterov")
    if name in ("adam", "adamw"):
        parts = [scale_by_adam_epsilon_hat(hp["beta_1"], hp["beta_2"], hp["epsilon"])]
        if name == "adamw":
            parts.append(optax.add_decayed_weights(hp["weight_decay"]))
        return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))
    if name == "rmsprop":
        return optax.rmsprop(learning_rate, decay=hp["rho"], eps=hp["epsilon"], eps_in_sqrt=True,
                             centered=hp["centered"], momentum=hp["momentum"] or None)
    if name == "adagrad":
        return optax.adagrad(learning_rate, initial_accumulator_value=hp["initial_accumulator_value"],
                             eps=hp["epsilon"])
    if name == "lbfgs":
        return optax.lbfgs(memory_size=hp["memory_size"])
    raise AssertionError(f"no optax build for {name}")  # resolve() admits only known names


# --- TensorFlow (tf.keras) ---------------------------------------------------------------------


def build_keras(tf: ModuleType, name: str, learning_rate: Any, hp: dict[str, Any]):
    """The ``tf.keras.optimizers`` instance for ``name`` with the same meaning as build_optax.

    ``learning_rate`` is a float or a no-argument callable returning the rate.
    """
    # Keras casts hyper-parameters with tf.cast, which turns a Python float into float32 first
    # (0.9 → 0.89999998); numpy float64 scalars are still floats to Keras but cast exactly.
    hp = {k: np.float64(v) if isinstance(v, float) else v for k, v in hp.items()}
    opt = tf.keras.optimizers
    if name == "sgd":
        return opt.SGD(learning_rate)
    if name in ("momentum", "nesterov"):
        return opt.SGD(learning_rate, momentum=hp["momentum"], nesterov=name == "nesterov")
    if name == "adam":
        return opt.Adam(learning_rate, beta_1=hp["beta_1"], beta_2=hp["beta_2"], epsilon=hp["epsilon"])
    if name == "adamw":
        return opt.AdamW(learning_rate, weight_decay=hp["weight_decay"], beta_1=hp["beta_1"],
                         beta_2=hp["beta_2"], epsilon=hp["epsilon"])
    if name == "rmsprop":
        return opt.RMSprop(learning_rate, rho=hp["rho"], momentum=hp["momentum"],
                           epsilon=hp["epsilon"], centered=hp["centered"])
    if name == "adagrad":
        return opt.Adagrad(learning_rate, initial_accumulator_value=hp["initial_accumulator_value"],
                           epsilon=hp["epsilon"])
    raise AssertionError(f"no keras build for {name}")  # resolve() refuses lbfgs on tensorflow
