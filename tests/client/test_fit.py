"""labcrunch.fit_line against the in-process app: JSON and .npy transfer, results, from_json,
plot()."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import httpx  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labcrunch import Client, ValidationError  # noqa: E402
from labcrunch import plot as lcplot  # noqa: E402
from labcrunch.fit import LineFitResult  # noqa: E402
from tests.helpers.fit_data import seed_data  # noqa: E402


def sent_media_types(lc, monkeypatch) -> list[str]:
    seen: list[str] = []
    original = lc._http.request

    def spy(method, path, **kwargs):
        seen.append((kwargs.get("headers") or {}).get("Content-Type", "application/json"))
        return original(method, path, **kwargs)

    monkeypatch.setattr(lc._http, "request", spy)
    return seen


@pytest.mark.parametrize("binary", [False, True])
def test_fit_line_least_squares(lc, monkeypatch, binary):
    x, y, sigma = seed_data()
    seen = sent_media_types(lc, monkeypatch)
    result = lc.fit_line(x, y, sigma, binary=binary)
    assert seen == ["application/x-npy" if binary else "application/json"]
    assert isinstance(result, LineFitResult)
    coef, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    np.testing.assert_allclose([result.m, result.q], coef, rtol=1e-10)
    np.testing.assert_allclose(result.covariance, cov, rtol=1e-10)
    assert result.covariance.shape == (2, 2) and result.history is None
    line, band = result.predict([0.0, 500.0])
    np.testing.assert_allclose(line, np.polyval(coef, [0.0, 500.0]), rtol=1e-10)
    np.testing.assert_allclose(band[0], np.sqrt(cov[1, 1]), rtol=1e-10)


def test_large_data_travel_as_npy(lc, monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 20_000)
    y = 3 * x - 1 + rng.normal(0, 0.1, x.size)
    seen = sent_media_types(lc, monkeypatch)
    result = lc.fit_line(x, y, method="gradient_descent", epochs=2, batch_size=1000, initial=(1.0, 0.0),
                         seed=3)
    assert seen == ["application/x-npy"]
    assert result.method == "gradient_descent" and len(result.history["loss"]) == 2
    coef = np.polyfit(x, y, 1)
    assert abs(result.m - coef[0]) < 3 * result.uncertainty["m"] + 1e-3


def test_async_client_fits_the_same_line(async_client):
    x, y, sigma = seed_data(n=200)

    async def fit() -> LineFitResult:
        async with async_client() as alc:
            return await alc.fit_line(x, y, sigma, binary=True)

    result = asyncio.run(fit())
    coef = np.polyfit(x, y, 1, w=1 / sigma)
    np.testing.assert_allclose([result.m, result.q], coef, rtol=1e-10)


def test_fit_line_errors_raise_validation_error(lc):
    with pytest.raises(ValidationError) as err:
        lc.fit_line([0.0, 1.0, 2.0], [1.0, np.nan, 2.0])
    assert err.value.status == 422 and err.value.errors[0]["loc"] == ["body", "y", 1]


def test_plot_returns_axes_and_draws_on_the_given_one(lc):
    x, y, sigma = seed_data(n=300)
    exact = lc.fit_line(x, y, sigma)
    ax = exact.plot()
    assert ax.get_xlabel() == "x" and len(ax.figure.axes) == 1
    line = ax.lines[-1]  # the fitted line over the data's range
    np.testing.assert_allclose(line.get_ydata(), np.polyval(np.polyfit(x, y, 1, w=1 / sigma),
                                                            line.get_xdata()), rtol=1e-9)
    descent = lc.fit_line(x, y, method="gradient_descent")
    fig, (left, right) = plt.subplots(1, 2)
    assert descent.plot(ax=left) is left and descent.plot_loss(ax=right) is right
    assert right.get_xlabel() == "epoch"
    np.testing.assert_array_equal(right.lines[0].get_ydata(), descent.history["loss"])
    assert lcplot.line_fit(exact, left) is left
    with pytest.raises(ValueError, match="no loss history"):
        exact.plot_loss()
    plt.close("all")


def test_missing_matplotlib_is_a_clear_error(lc, monkeypatch):
    x, y, _ = seed_data(n=50)
    result = lc.fit_line(x, y)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'labcrunch\[plot\]'") as err:
        result.plot()
    assert type(err.value) is ImportError  # not a bare ModuleNotFoundError


def test_from_json_reads_the_raw_answer(api, lc):
    x, y, sigma = seed_data(n=40)
    body = {"x": x.tolist(), "y": y.tolist(), "sigma": sigma.tolist()}
    raw = api.post("/v1/fit/line", json=body).json()
    parsed = LineFitResult.from_json(json.loads(json.dumps(raw)))
    coef, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    np.testing.assert_allclose([parsed.m, parsed.q], coef, rtol=1e-10)
    np.testing.assert_allclose(parsed.covariance, cov, rtol=1e-10)
    assert parsed.x is None and parsed.history is None and parsed.chi2 == raw["chi2"]
    via_client = lc.fit_line(x, y, sigma)
    assert (via_client.m, via_client.q, via_client.ndf) == (parsed.m, parsed.q, parsed.ndf)
    np.testing.assert_array_equal(via_client.x, x)
    spelled = LineFitResult.from_json({**raw, "chi2": "Infinity", "history": {
        "loss": [1.0, "NaN"], "m": [0.5, "-Infinity"], "q": [0.0, 0.0]}})
    assert spelled.chi2 == np.inf and np.isnan(spelled.history["loss"][1])
    assert spelled.history["m"][1] == -np.inf


def descent_body(**options) -> dict:
    """The JSON body fit_line sends (its own logic: read off a local mock transport)."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(422, json={"title": "stop", "status": 422, "detail": "recorded"})

    with Client("http://x", transport=httpx.MockTransport(answer), max_retries=0) as mock:
        with pytest.raises(ValidationError):
            mock.fit_line([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], method="gradient_descent", **options)
    return json.loads(seen[0].content)


def test_descent_options_travel_as_gradient_descent():
    body = descent_body(epochs=3, learning_rate=0.05, initial=(1.0, 2.0), optimizer="adam")
    assert "gd" not in body
    assert body["gradient_descent"] == {"epochs": 3, "learning_rate": 0.05, "optimizer": "adam",
                                        "initial": {"m": 1.0, "q": 2.0}}
    assert "gradient_descent" not in descent_body()  # nothing given: the server's defaults


def test_descent_options_in_json_reach_the_server(api, lc):
    x, y, _ = seed_data(n=300)
    result = lc.fit_line(x, y, method="gradient_descent", epochs=3, binary=False)
    assert len(result.history["loss"]) == 3
