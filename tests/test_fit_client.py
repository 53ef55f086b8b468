"""labcrunch.fit_line against the in-process app: JSON and .npy transfer, results, plot()."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import asyncio  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labcrunch import AsyncClient, Client, ValidationError  # noqa: E402
from labcrunch.fit import LineFitResult  # noqa: E402
from tests.test_fit import seed_data  # noqa: E402


@pytest.fixture(scope="module")
def lc(api):
    with Client("http://testserver", transport=api._transport, max_retries=0) as client:
        yield client


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
    result = lc.fit_line(x, y, method="gradient_descent", epochs=2, batch_size=1000, init=(1.0, 0.0),
                         seed=3)
    assert seen == ["application/x-npy"]
    assert result.method == "gradient_descent" and len(result.history["loss"]) == 2
    coef = np.polyfit(x, y, 1)
    assert abs(result.m - coef[0]) < 3 * result.uncertainty["m"] + 1e-3


def test_async_client_fits_the_same_line(api, app):
    x, y, sigma = seed_data(n=200)

    async def fit() -> LineFitResult:
        async with AsyncClient("http://app", transport=httpx.ASGITransport(app=app)) as alc:
            return await alc.fit_line(x, y, sigma, binary=True)

    result = asyncio.run(fit())
    coef = np.polyfit(x, y, 1, w=1 / sigma)
    np.testing.assert_allclose([result.m, result.q], coef, rtol=1e-10)


def test_fit_line_errors_raise_validation_error(lc):
    with pytest.raises(ValidationError) as err:
        lc.fit_line([0.0, 1.0, 2.0], [1.0, np.nan, 2.0])
    assert err.value.status == 422 and err.value.errors[0]["loc"] == ["body", "y", 1]


def test_plot_runs_under_agg(lc):
    x, y, sigma = seed_data(n=300)
    fig = lc.fit_line(x, y, sigma).plot()
    assert len(fig.axes) == 1
    fig = lc.fit_line(x, y, method="gradient_descent", epochs=3).plot()
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "epoch"
    assert len(fig.axes[1].lines[0].get_xdata()) == 3
    import matplotlib.pyplot as plt

    plt.close("all")
