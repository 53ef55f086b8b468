"""labcrunch.plot: figures saved with path=, labelled ellipses, and scan ranges that hold them."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labcrunch.pyhf import simple_model  # noqa: E402

SEED = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])
# The seed's covariance (2·H⁻¹ of −2 ln L, closed form; tests/service/pyhf/test_fit.py)
COVARIANCE = np.array([[1.09, -0.245], [-0.245, 0.1225]])


@pytest.fixture(scope="module")
def seed_fit(lc):
    return lc.pyhf_fit(SEED)


def test_scan_axes_hold_the_two_sigma_ellipse(seed_fit):
    (x, x_low, x_high, nx), (y, y_low, y_high, ny) = seed_fit.scan_axes("mu", "uncorr_bkguncrt[0]")
    assert (x, y, nx, ny) == ("mu", "uncorr_bkguncrt[0]", 61, 61)
    # The region dᵀC⁻¹d ≤ k reaches ±√(k C_ii) along axis i (k = 6.18 for 95.45 % of two).
    k = 6.180
    for (low, high), variance in zip([(x_low, x_high), (y_low, y_high)], np.diag(COVARIANCE),
                                     strict=True):
        reach = math.sqrt(k * variance)
        assert low < 1.0 - reach and high > 1.0 + reach
        assert high - low < 2 * 1.5 * reach  # and not much wider
    with pytest.raises(ValueError, match="not a free parameter"):
        seed_fit.scan_axes("mu", "nope")


@pytest.mark.slow  # a pyhf scan compiles
def test_the_scan_figure_labels_each_ellipse_and_saves_to_path(lc, seed_fit, tmp_path):
    scan = lc.pyhf_scan(SEED, *seed_fit.scan_axes("mu", "uncorr_bkguncrt[0]", 21),
                        gradient_points=(3, 3))
    target = tmp_path / "scan.png"
    ax = scan.plot(fit=seed_fit, path=target)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("1σ (68.27 %, joint") for t in legend)
    assert any(t.startswith("2σ (95.45 %, joint") for t in legend)
    assert ax.get_title() and ax.get_xlabel() == "mu"
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close("all")


@pytest.mark.slow  # a gradient-descent fit, a CLs scan and a minimisation compile
def test_every_plot_saves_to_path(lc, seed_fit, tmp_path):
    fit = lc.fit_line([0.0, 1.0, 2.0, 3.0], [1.0, 3.1, 4.9, 7.2], method="gradient_descent",
                      epochs=3)
    limit = lc.pyhf_upper_limit(SEED, (0.0, 5.0, 11))
    sweep = lc.minimize("x**2", {"x": 1.0}, "sgd", [0.1, 0.5], steps=10)
    drawings = {"fit.png": lambda p: fit.plot(path=p), "loss.svg": lambda p: fit.plot_loss(path=p),
                "cls.pdf": lambda p: limit.plot(path=p), "sweep.png": lambda p: sweep.plot(path=p),
                "correlation.png": lambda p: seed_fit.plot_correlation(path=p)}
    for name, draw in drawings.items():
        ax = draw(tmp_path / name)
        assert ax.get_title(), name
        assert (tmp_path / name).stat().st_size > 1000, name
    assert (tmp_path / "cls.pdf").read_bytes()[:4] == b"%PDF"
    plt.close("all")
