"""labcrunch.gradient against the in-process app: expressions, programs, .npz both ways, the async
twin, from_json and from_npz."""

from __future__ import annotations

import asyncio
import json

import jax
import numpy as np
import pytest

from labcrunch._arrays import from_npz as read_npz
from labcrunch._arrays import json_numbers, to_npz
from labcrunch.gradient import GradientResult
from tests.helpers.seed_program import SEED_PROGRAM, seed_f


def test_client_expression_program_and_binary(lc):
    result = lc.gradient(expression="(x - 1)**2", at={"x": 3.0})
    assert result.variables == ("x",) and float(result.value) == 4.0
    assert float(result.gradient["x"]) == 4.0 and result.hessian is None
    result = lc.gradient(program=SEED_PROGRAM, function="f", at={"x": 3.4}, order=2,
                         backend="tensorflow")
    assert float(result.gradient["x"]) == pytest.approx(float(jax.grad(seed_f)(3.4)), rel=1e-12)
    assert result.hessian.shape == (1, 1) and result.backend == "tensorflow"
    x = np.linspace(0.1, 3, 20_000)  # over the threshold: .npz both ways
    result = lc.gradient(expression="log(x) * y", at={"x": x, "y": 2.0}, order=2)
    np.testing.assert_allclose(result.gradient["x"], 2.0 / x, rtol=1e-14)
    np.testing.assert_allclose(result.gradient_matrix[:, 1], np.log(x), rtol=1e-14)
    np.testing.assert_allclose(result.hessian[:, 0, 1], 1.0 / x, rtol=1e-14)
    small = lc.gradient(expression="log(x)", at={"x": [0.0, 1.0]}, binary=False)
    assert small.value[0] == -np.inf and small.gradient["x"][1] == 1.0


def test_async_client(async_client):
    async def main():
        async with async_client() as lc:
            return await lc.gradient(expression="x * y", at={"x": [1.0, 2.0], "y": 3.0}, order=2)

    result = asyncio.run(main())
    np.testing.assert_array_equal(result.gradient["x"], [3.0, 3.0])
    np.testing.assert_array_equal(result.gradient["y"], [1.0, 2.0])
    np.testing.assert_array_equal(result.hessian[0], [[0.0, 1.0], [1.0, 0.0]])


def test_gradient_result_from_json_and_from_npz_agree(api):
    x = np.array([0.5, 1.0, np.inf, 0.0])
    body = {"expression": "log(x) * y", "at": {"x": json_numbers(x), "y": 2.0}, "order": 2}
    raw = api.post("/v1/gradient", json=body).json()
    parsed = GradientResult.from_json(json.loads(json.dumps(raw)))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(parsed.value, 2 * np.log(x), rtol=1e-15)
        np.testing.assert_allclose(parsed.gradient["y"], np.log(x), rtol=1e-15)
        np.testing.assert_allclose(parsed.gradient["x"], 2 / x, rtol=1e-15)
    np.testing.assert_allclose(parsed.hessian[:2, 0, 1], 1 / x[:2], rtol=1e-15)
    npz = api.post("/v1/gradient", params={k: v for k, v in body.items() if k != "at"},
                   content=to_npz({"x": x, "y": np.full(4, 2.0)}),
                   headers={"Content-Type": "application/x-npz", "Accept": "application/x-npz"})
    from_npz = GradientResult.from_npz(read_npz(npz.content), backend="jax", dtype="float64")
    assert from_npz.variables == parsed.variables and from_npz.device == parsed.device
    for field in ("value", "hessian", "gradient_matrix"):
        np.testing.assert_array_equal(getattr(from_npz, field), getattr(parsed, field))
