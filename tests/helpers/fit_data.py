"""The line fit's test data and request helpers, shared by the service's and the client's tests."""

from __future__ import annotations

import io

import numpy as np

ROUTE = "/v1/fit/line"


def seed_data(seed: int = 7, n: int = 1000):
    """The seed notebook's data: x = 0..999, y ~ N(2.5x + 1.2, 0.1·(2.5x + 1.2) + 0.1)."""
    rng = np.random.default_rng(seed)
    x = np.arange(0, float(n))
    truth = 2.5 * x + 1.2
    sigma = 0.1 * truth + 0.1
    return x, rng.normal(truth, sigma), sigma


def npy_bytes(table: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, table)
    return buf.getvalue()


def post_npy(api, table: np.ndarray, **params):
    return api.post(ROUTE, content=npy_bytes(table), params=params,
                    headers={"Content-Type": "application/x-npy"})
