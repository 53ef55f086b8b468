"""Results print short: shapes and key numbers, never the data; a FractalImage its size."""

from __future__ import annotations

import numpy as np
import pytest

from labcrunch._repr import short
from labcrunch.pyhf import simple_model

SEED = simple_model(signal=[5.0], bkg=[10.0], bkg_uncertainty=[3.5])


def test_a_line_fit_of_a_million_points_prints_in_one_short_line(lc):
    x = np.arange(1_000_000.0)
    fit = lc.fit_line(x, 2.5 * x + 1.2 + np.sin(x))
    text = repr(fit)
    assert len(text) < 600 and "\n" not in text
    assert "x=<float64 array 1000000>" in text and f"m={fit.m:.6g}" in text


@pytest.mark.slow  # compiles a gradient, a minimisation, a fractal and a pyhf model
def test_every_result_prints_short(lc):
    results = [
        lc.info(),
        lc.gradient("sin(x) * y", at={"x": np.linspace(0, 1, 100), "y": 2.0}),
        lc.minimize("x**2 + y**2", {"x": 1.0, "y": 2.0}, "sgd", [0.1, 0.2], steps=100),
        lc.fractal_counts(width=30, height=20, max_iter=20),
        lc.pyhf_fit(SEED),
        lc.pyhf_upper_limit(SEED, (0.0, 5.0, 11)),
        *lc.minimize_optimizers(),
    ]
    for result in results:
        text = repr(result)
        assert len(text) < 2_500, (type(result), len(text))
        assert "\n" not in text


def test_a_fractal_image_shows_its_size_in_a_script_and_its_picture_in_jupyter(lc):
    image = lc.fractal("julia", width=48, height=32, max_iter=30)
    assert image.size == (48, 32)
    assert repr(image).startswith("FractalImage(48×32 PNG, ") and "bytes" in repr(image)
    assert str(image) == repr(image)
    assert image._repr_png_() == image.data  # what IPython shows inline


def test_short_values():
    assert short(np.arange(3.0)) == "[0., 1., 2.]"
    assert short(np.zeros((2, 2))) == "[[0., 0.], [0., 0.]]"
    assert short(np.zeros((300, 2), dtype=np.float32)) == "<float32 array 300×2>"
    assert short(list(range(20))) == "[20 items]" and short({"a": 1.0}) == "{'a': 1}"


def test_every_result_type_of_the_client_prints_short():
    """A result type added later (jobs, networks, ...) gets a short repr too: from ShortRepr
    (declared with repr=False) or a __repr__ of its own."""
    import dataclasses
    import importlib
    import pkgutil

    import labcrunch
    from labcrunch._repr import ShortRepr

    found = []
    for module in pkgutil.iter_modules(labcrunch.__path__):
        for value in vars(importlib.import_module(f"labcrunch.{module.name}")).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and hasattr(value, "from_json"):
                found.append(value)
                written = vars(value).get("__repr__")
                # dataclass's generated __repr__ (wrapped by reprlib) prints every array in full
                generated = written is not None and hasattr(written, "__wrapped__")
                assert not generated, f"{value.__name__}: declare it with repr=False"
                assert issubclass(value, ShortRepr) or written is not None, value
    assert len(found) >= 10
