"""The server's encodings: the .npz writer against numpy's own reader."""

from __future__ import annotations

import io

import numpy as np


def test_npz_writer_round_trips_like_savez():
    from labcrunch_service.encoding import to_npz

    arrays = {"variables": np.array(["x", "yy"]), "value": np.linspace(0, 1, 1000),
              "gradient": np.arange(6.0).reshape(3, 2)[:, ::-1],  # not contiguous
              "hessian": np.zeros((0, 0)), "f32": np.ones(3, np.float32), "elapsed_ms": np.float64(1.5),
              "device": np.array("cuda:0 (NVIDIA H100)"), "none": np.array([], dtype=str),
              "nan": np.array([np.nan, np.inf, -np.inf])}
    with np.load(io.BytesIO(to_npz(arrays)), allow_pickle=False) as ours:
        assert sorted(ours.files) == sorted(arrays)
        for name, expected in arrays.items():
            got = ours[name]
            assert got.dtype == np.asarray(expected).dtype and got.shape == np.shape(expected), name
            np.testing.assert_array_equal(got, expected)
