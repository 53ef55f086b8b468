"""labcrunch.minimize against the in-process app: numpy histories, plots, errors, the async twin,
from_json."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from labcrunch.minimize import MinimizeResult
from tests.helpers.minimize_cases import ROSENBROCK, SEED_RATES


def test_minimize_result_from_json(api):
    raw = api.post("/v1/minimize", json={"expression": "x**2", "start": {"x": 1.0},
                                         "learning_rate": [0.1, 1.5], "steps": 20,
                                         "landscape": 5}).json()
    parsed = MinimizeResult.from_json(json.loads(json.dumps(raw)), expression="x**2")
    steady, diverging = parsed.runs
    np.testing.assert_allclose(steady.history.x["x"], 0.8 ** np.arange(21), rtol=1e-13)
    np.testing.assert_allclose(diverging.history.x["x"], (-2.0) ** np.arange(21), rtol=1e-13)
    assert steady.learning_rate == 0.1 and not steady.diverged and diverging.steps_taken == 20
    np.testing.assert_allclose(parsed.landscape.value, parsed.landscape.x["x"] ** 2, rtol=1e-13)
    assert MinimizeResult.from_json(raw).expression is None


def test_client_minimize_returns_numpy_histories_and_plots(lc):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = lc.minimize("x**2", {"x": 1.0}, "sgd", SEED_RATES, steps=50)
    assert [r.learning_rate for r in result.runs] == SEED_RATES
    run = result.runs[0]
    assert isinstance(run.history.x["x"], np.ndarray) and run.history.step[-1] == 50
    np.testing.assert_allclose(run.history.x["x"], 0.8 ** np.arange(51), rtol=1e-13)
    ax = result.plot()
    paths = [line for line in ax.lines if not line.get_label().startswith("_")]
    assert len(paths) == len(SEED_RATES)  # one path per rate, after the function
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ax.lines[0].get_xdata() ** 2, rtol=1e-12)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0.1", "0.99", "0.001"]
    # each path's start (white circle) and end (square) are marked, in the path's colour
    for run, path in zip(result.runs, paths, strict=True):
        marks = {line.get_marker(): (line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines
                 if line.get_label().startswith("_") and line.get_color() == path.get_color()
                 or line.get_markeredgecolor() == path.get_color()}
        assert marks["o"] == (run.history.x["x"][0], run.history.value[0])
        assert marks["s"] == (run.history.x["x"][-1], run.history.value[-1])
    assert "○ start" in ax.get_title() and "■ end" in ax.get_title()

    result = lc.minimize(ROSENBROCK, {"x": -1.2, "y": 1.0}, "lbfgs", steps=100)
    assert result.landscape.value.shape == (81, 81)
    assert result.runs[0].history.points(result.variables).shape[1] == 2
    fig, ax = plt.subplots()
    assert result.plot(ax=ax) is ax and len([line for line in ax.lines
                                             if not line.get_label().startswith("_")]) == 1
    plt.close("all")


def test_client_maps_errors_and_lists_optimizers(lc):
    from labcrunch import ValidationError
    from labcrunch_service.minimize import optimizers as optimizers_module

    optimizers = {o.name: o for o in lc.minimize_optimizers()}
    assert set(optimizers) == set(optimizers_module.OPTIMIZERS)
    assert optimizers["lbfgs"].default_learning_rate is None and optimizers["lbfgs"].backends == ("jax",)
    assert optimizers["adam"].options["beta_2"].default == 0.999

    with pytest.raises(ValidationError):
        lc.minimize("x**2", {"y": 1.0})


def test_async_client_minimize(async_client):
    async def go():
        async with async_client() as lc:
            return await lc.minimize("x**2", {"x": 1.0}, "sgd", SEED_RATES, steps=50)

    result = asyncio.run(go())
    np.testing.assert_allclose(result.runs[1].history.x["x"], (1 - 2 * 0.99) ** np.arange(51), rtol=1e-13)
    assert result.landscape is not None and result.device
