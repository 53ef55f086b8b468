"""labcrunch.fractal / fractal_counts / fractal_tile against the in-process app: npy arrays, PNG
results, from_json, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labcrunch import RequestTooLargeError, ValidationError
from labcrunch.fractal import FractalCounts, FractalImage
from tests.helpers.fractal_reference import LATTICE, reference_count


def test_npy_counts_are_a_numpy_array(lc):
    result = lc.fractal_counts("mandelbrot", max_iter=30, **LATTICE)
    assert isinstance(result, FractalCounts) and result.smooth is None and result.box is None
    assert (result.kind, result.max_iter) == ("mandelbrot", 30) and result.device
    assert result.elapsed_ms >= 0
    counts = result.counts
    assert isinstance(counts, np.ndarray) and counts.dtype == np.int32 and counts.shape == (5, 5)
    expected = [[reference_count("mandelbrot", a, b, 0, 30, 2.0, "float32")[0]
                 for a in range(-2, 3)] for b in range(2, -3, -1)]
    np.testing.assert_array_equal(counts, expected)


def test_json_counts(lc):
    result = lc.fractal_counts("julia", width=8, height=6, max_iter=20, format="json", smooth=True)
    assert isinstance(result, FractalCounts)
    assert result.counts.shape == (6, 8) and result.smooth.shape == (6, 8)
    assert result.box == {"x_min": -1.5, "x_max": 1.5, "y_min": -1.5, "y_max": 1.5}
    assert result.device and result.elapsed_ms >= 0 and result.kind == "julia"
    as_npy = lc.fractal_counts("julia", width=8, height=6, max_iter=20)
    np.testing.assert_array_equal(as_npy.counts, result.counts)


def test_from_json_reads_the_raw_answer(api):
    body = {"kind": "mandelbrot", "max_iter": 30, "format": "json", **LATTICE}
    raw = api.post("/v1/fractal", json=body).json()
    parsed = FractalCounts.from_json(json.loads(json.dumps(raw)))
    expected = [[reference_count("mandelbrot", a, b, 0, 30, 2.0, "float32")[0]
                 for a in range(-2, 3)] for b in range(2, -3, -1)]
    np.testing.assert_array_equal(parsed.counts, expected)
    assert parsed.counts.dtype == np.int32 and parsed.box == raw["box"]
    np.testing.assert_array_equal(parsed.smooth, np.asarray(raw["smooth"], dtype=float))


def test_png_result_saves_and_opens(lc, tmp_path):
    result = lc.fractal("julia", width=40, height=30, max_iter=50, colormap="inferno")
    assert isinstance(result, FractalImage)
    assert result.data.startswith(b"\x89PNG") and result.device and result.elapsed_ms >= 0
    path = result.save(tmp_path / "julia.png")
    assert path.read_bytes() == result.data
    assert result.image().size == (40, 30)


def test_tile(lc):
    tile = lc.fractal_tile(2, 1, 1, colormap="gray", max_iter=40)
    assert tile.image().size == (256, 256)


def test_errors_map_to_client_exceptions(lc):
    with pytest.raises(ValidationError) as err:
        lc.fractal(x_min=1.0, x_max=0.0, y_min=0.0, y_max=1.0)
    assert err.value.status == 422
    with pytest.raises(RequestTooLargeError) as err:
        lc.fractal(width=5000, height=5000)
    assert err.value.problem["limit"] == "max_pixels"
