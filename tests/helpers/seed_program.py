"""The seed notebook's branching, looping, recursive program, as text and as the Python function it
means (the oracle: jax.grad of the latter)."""

from __future__ import annotations

import jax.numpy as jnp

SEED_PROGRAM = ("def f(x):\n    if x > 0:\n        for i in range(2):\n            x += "
                "jax.numpy.sqrt(x)\n        return x / 10.\n    else:\n        return f(f(x ** 2)) + 1\n")


def seed_f(x):  # the same function, written directly
    if x > 0:
        for _ in range(2):
            x += jnp.sqrt(x)
        return x / 10.0
    return seed_f(seed_f(x**2)) + 1
