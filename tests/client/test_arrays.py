"""How the client writes and reads arrays: the non-finite spellings, one binary threshold."""

from __future__ import annotations

import importlib

import httpx
import numpy as np
import pytest

from labcrunch import Client, ValidationError
from labcrunch._arrays import NON_FINITE, array, json_numbers, number, spell
from labcrunch._constants import BINARY_THRESHOLD
from tests.helpers.mock_transport import PROBLEM, recording


def test_non_finite_spellings_round_trip():
    assert number("NaN") != number("NaN")
    assert number("-Infinity") == float("-inf")
    out = array([[1, "Infinity"], ["NaN", -2.5]])
    assert out.shape == (2, 2) and out[0, 1] == float("inf") and out[1, 1] == -2.5
    spelled = json_numbers(np.array([[1.5, np.inf], [np.nan, -np.inf]]))
    assert spelled == [[1.5, "Infinity"], ["NaN", "-Infinity"]]
    assert json_numbers(np.arange(3.0)) == [0.0, 1.0, 2.0]
    assert json_numbers(np.float64(-np.inf)) == "-Infinity" and json_numbers(2.5) == 2.5
    for text, value in NON_FINITE.items():  # one table, read and written the same way
        assert spell(value) == text and (number(text) == value or np.isnan(value))
    # The server's own encoder is the oracle for the spelling.
    from labcrunch_service.encoding import jsonable

    values = [1.0, np.nan, np.inf, -np.inf]
    assert json_numbers(values) == jsonable(np.array(values))


def sent(method, *args, **kwargs) -> httpx.Request:
    """The request a client method sends (read off a local mock transport that refuses it)."""
    transport, seen = recording(lambda: httpx.Response(422, json={**PROBLEM, "status": 422}))
    with Client("http://x", transport=transport, max_retries=0) as lc, pytest.raises(ValidationError):
        getattr(lc, method)(*args, **kwargs)
    return seen[0]


@pytest.mark.parametrize("size", [BINARY_THRESHOLD - 1, BINARY_THRESHOLD])
def test_one_binary_threshold_for_every_domain(size):
    binary = size >= BINARY_THRESHOLD
    gradient = sent("gradient", "x", at={"x": np.zeros(size)})
    assert (gradient.headers["content-type"] == "application/x-npz") is binary
    fit = sent("fit_line", np.arange(size, dtype=float), np.arange(size, dtype=float))
    assert (fit.headers["content-type"] == "application/x-npy") is binary
    side = int(np.sqrt(size))
    scan = sent("pyhf_scan", {"simple": {}}, ("a", 0, 1, side), ("b", 0, 1, size // side))
    assert (scan.headers.get("accept") == "application/x-npz") is (side * (size // side) >= BINARY_THRESHOLD)
    for module in ("gradient", "fit", "pyhf"):  # no second copy of the constant
        assert not hasattr(importlib.import_module(f"labcrunch.{module}"), "BINARY_THRESHOLD")


@pytest.mark.parametrize("compressed", [False, True])
def test_binary_answers_decode_like_numpy_and_stored_ones_without_a_copy(compressed):
    import io

    from labcrunch._arrays import from_npy, from_npz

    arrays = {"value": np.linspace(0, 1, 1001), "fortran": np.asfortranarray(np.ones((3, 4))),
              "device": np.array("cpu"), "big_endian": np.arange(3, dtype=">i4"), "scalar": np.float64(2)}
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    data = buf.getvalue()
    decoded = from_npz(data)
    for name, expected in arrays.items():
        assert decoded[name].dtype == np.asarray(expected).dtype, name
        np.testing.assert_array_equal(decoded[name], expected)
    assert np.shares_memory(decoded["value"], np.frombuffer(data, np.uint8)) is not compressed
    pickled = io.BytesIO()
    np.save(pickled, np.array([None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object"):
        from_npy(pickled.getvalue())


REQUEST_ARRAYS = {
    "x": np.random.default_rng(3).uniform(-3, 3, 1001), "scalar": np.asarray(3.5),
    "empty": np.zeros((0, 3)), "f32": np.arange(20, dtype=np.float32).reshape(4, 5),
    "ints": np.arange(10), "big_endian": np.arange(3, dtype=">i4"), "flags": np.array([True, False]),
    "strided": np.linspace(0, 1, 20)[::3], "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "ünï名": np.ones(2)}


def test_request_archives_are_what_numpy_writes_and_reads():
    """The client's own .npz writer against numpy's: the same members and arrays, valid CRC-32s
    (zipfile checks them), each member's .npy bytes as np.save writes them (C order: a Fortran
    array is sent in C order, the same array)."""
    import io
    import zipfile

    from labcrunch._arrays import to_npy, to_npz

    data = to_npz(REQUEST_ARRAYS)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [f"{name}.npy" for name in REQUEST_ARRAYS]
        for name, expected in REQUEST_ARRAYS.items():
            numpy_npy = io.BytesIO()
            np.save(numpy_npy, np.ascontiguousarray(expected) if expected.ndim else expected)
            assert archive.read(f"{name}.npy") == numpy_npy.getvalue() == to_npy(expected), name
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    for name, expected in REQUEST_ARRAYS.items():
        assert loaded[name].dtype == expected.dtype and loaded[name].shape == expected.shape
        np.testing.assert_array_equal(loaded[name], expected)


def test_request_archives_refuse_pickles_and_leave_zip64_to_numpy(monkeypatch):
    import io

    import labcrunch._arrays as arrays

    with pytest.raises(ValueError, match="pickles"):
        arrays.to_npz({"x": np.array([None, 1], dtype=object)})
    with pytest.raises(ValueError, match="pickles"):
        arrays.to_npy(np.array([None], dtype=object))
    monkeypatch.setattr(arrays, "_ZIP32_LIMIT", 5000)  # as if the arrays took 4 GiB
    data = arrays.to_npz(REQUEST_ARRAYS)
    numpy_npz = io.BytesIO()
    np.savez(numpy_npz, **REQUEST_ARRAYS)
    assert data == numpy_npz.getvalue()  # numpy's own archive (ZIP64 extra fields and all)
    loaded = np.load(io.BytesIO(data))
    for name, expected in REQUEST_ARRAYS.items():
        np.testing.assert_array_equal(loaded[name], expected)
