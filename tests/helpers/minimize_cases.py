"""Minimization cases shared by the service's and the client's tests."""

from __future__ import annotations

SEED_RATES = [0.1, 0.99, 0.001]  # the seed notebook's three SGD learning rates
ROSENBROCK = "(1 - x)**2 + 100 * (y - x**2)**2"  # minimum 0 at (1, 1)
