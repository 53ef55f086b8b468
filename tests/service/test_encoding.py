"""The server's encodings: the .npz writer against numpy's own reader, and the .npy/.npz reader
against numpy's reader and against hostile archives (decompression bombs, duplicate names, lies
in the headers), checked before any array data is inflated."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from labcrunch_service.encoding import npz_parts, read_npy, read_npz, to_npy, to_npz
from labcrunch_service.errors import InvalidInput, LimitExceeded
from tests.conftest import assert_problem

NPZ = "application/x-npz"


def test_npz_writer_round_trips_like_savez():
    arrays = {"variables": np.array(["x", "yy"]), "value": np.linspace(0, 1, 1000),
              "gradient": np.arange(6.0).reshape(3, 2)[:, ::-1],  # not contiguous
              "hessian": np.zeros((0, 0)), "f32": np.ones(3, np.float32), "elapsed_ms": np.float64(1.5),
              "device": np.array("cuda:0 (NVIDIA H100)"), "none": np.array([], dtype=str),
              "nan": np.array([np.nan, np.inf, -np.inf]), "μ": np.arange(3, dtype=">i4")}
    blob = to_npz(arrays)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.testzip() is None  # every member's CRC-32 is right
    with np.load(io.BytesIO(blob), allow_pickle=False) as ours:
        assert sorted(ours.files) == sorted(arrays)
        for name, expected in arrays.items():
            got = ours[name]
            assert got.dtype == np.asarray(expected).dtype and got.shape == np.shape(expected), name
            np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.load(io.BytesIO(to_npy(arrays["gradient"]))), arrays["gradient"])


def test_npz_writer_passes_the_arrays_memory_uncopied():
    value = np.linspace(0, 1, 10_000)
    parts = npz_parts({"value": value})
    assert any(isinstance(p, memoryview) and np.shares_memory(np.asarray(p), value) for p in parts)


def _savez(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _read(data: bytes, **limits: int) -> dict[str, np.ndarray]:
    return read_npz(data, **({"max_arrays": 8, "max_elements": 10_000,
                              "max_total_bytes": 1 << 20} | limits))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_reader_reads_what_numpy_writes(compressed):
    arrays = {"x": np.linspace(-1, 1, 1001), "n": np.arange(12, dtype=np.int32).reshape(3, 4),
              "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "big_endian": np.arange(4, dtype=">f8"),
              "scalar": np.float32(2.5), "empty": np.zeros((0, 3))}
    data = _savez(compressed, **arrays)
    ours = _read(data)
    assert list(ours) == list(arrays)
    for name, expected in arrays.items():
        assert ours[name].dtype == np.asarray(expected).dtype and ours[name].shape == np.shape(expected)
        np.testing.assert_array_equal(ours[name], expected)
    if not compressed:  # stored members are read-only views of the body, not copies
        body = np.frombuffer(data, np.uint8)
        assert np.shares_memory(ours["x"], body) and not ours["x"].flags.writeable


def test_npy_reader_is_a_view_and_checks_the_size():
    data = to_npy(np.arange(5.0))
    arr = read_npy(data, max_elements=5)
    np.testing.assert_array_equal(arr, np.arange(5.0))
    assert np.shares_memory(arr, np.frombuffer(data, np.uint8))
    with pytest.raises(InvalidInput, match="bytes of data"):
        read_npy(data[:-8], max_elements=5)
    with pytest.raises(LimitExceeded):
        read_npy(data, max_elements=4)


# --- hostile archives -----------------------------------------------------------------------

def _npy(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """An .npy header for ``shape`` (the data follows it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip(members: list[tuple[str, int, bytes, int]], *, flags: int = 0, zip64: bool = False) -> bytes:
    """A ZIP archive written by hand, so it can lie: (name, method, stored bytes, declared
    uncompressed size) per member; ``zip64``: the directory gives sizes and offsets in ZIP64
    extra fields."""
    out, directory = bytearray(), bytearray()
    for name, method, stored, size in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 33, 0, len(stored),
                           size, len(raw), 0) + raw + stored
        extra = struct.pack("<2H3Q", 1, 24, size, len(stored), offset) if zip64 else b""
        sizes = (0xFFFFFFFF,) * 2 if zip64 else (len(stored), size)
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, flags, method, 0, 33, 0,
                                 *sizes, len(raw), len(extra), 0, 0, 0, 0,
                                 0xFFFFFFFF if zip64 else offset) + raw + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory),
                      len(out), 0)
    return bytes(out + directory + end)


def _deflated(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _bomb(members: int, points: int) -> bytes:
    """``members`` deflated members, each ``np.zeros(points)``: a few kB that inflate to
    ``members * points * 8`` bytes (compressed once, repeated)."""
    member = _npy((points,)) + bytes(points * 8)
    stored = _deflated(member)
    return _zip([(f"v{i}.npy", 8, stored, len(member)) for i in range(members)])


def test_a_decompression_bomb_is_refused_before_anything_is_inflated():
    """256 members of np.zeros(2,000,000) deflate to ~4 MB and inflate to ~4 GB: every member is
    within max_points, their total is not, and nothing is inflated to find that out."""
    bomb = _bomb(256, 2_000_000)
    assert len(bomb) < 5_000_000
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded) as refused:
            read_npz(bomb, max_arrays=256, max_elements=2_000_000, max_total_bytes=64 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.extra["limit"] == "max_body_bytes"
    assert refused.value.extra["value"] == 256 * 2_000_000 * 8
    assert peak < 4 << 20, f"{peak} bytes allocated: members were inflated"


def test_zip64_directory_entries_are_read():
    x = _npy((3,)) + np.arange(3.0).tobytes()
    arrays = _read(_zip([("x.npy", 0, x, len(x)), ("y.npy", 8, _deflated(x), len(x))], zip64=True))
    for name in "xy":
        np.testing.assert_array_equal(arrays[name], np.arange(3.0))


def test_a_deflated_member_is_inflated_no_further_than_its_header_declares():
    member = _npy((10,)) + bytes(80)
    longer = _npy((10,)) + bytes(8 * 10**6)  # says 10 numbers, inflates to 10^6 more
    with pytest.raises(InvalidInput, match="more bytes than its .npy header declares"):
        _read(_zip([("x.npy", 8, _deflated(longer), len(member))]))
    with pytest.raises(InvalidInput, match="inflates to"):
        _read(_zip([("x.npy", 8, _deflated(member[:-8]), len(member))]))


def _lying_size(archive: bytes, more: int) -> bytes:
    """``archive`` whose last directory entry says its member is ``more`` bytes longer."""
    at = archive.rindex(b"PK\x01\x02") + 20
    size = struct.unpack_from("<L", archive, at)[0]
    return archive[:at] + struct.pack("<L", size + more) + archive[at + 4:]


def _hostile_npz() -> dict[str, tuple[bytes, int]]:
    """Hostile .npz bodies for /v1/gradient (expression ``x``) and the status each must get."""
    x = _npy((3,)) + np.ones(3).tobytes()
    return {
        "decompression bomb (total over max_body_bytes)": (_bomb(256, 200_000), 413),
        "duplicate member names": (_zip([("x.npy", 0, x, len(x))] * 2), 422),
        "same name with and without .npy": (_zip([("x.npy", 0, x, len(x)), ("x", 0, x, len(x))]), 422),
        "more members than max_variables": (_zip([(f"v{i}.npy", 0, x, len(x)) for i in range(257)]),
                                            413),
        "member over max_points (declared shape)": (_zip([("x.npy", 8, _deflated(_npy((2_000_001,))),
                                                           16_000_200)]), 413),
        "negative shape": (_zip([("x.npy", 0, _npy((-1,)), 128)]), 422),
        "object dtype (a pickle)": (_savez(x=np.array([object()], dtype=object)), 422),
        "string dtype": (_savez(x=np.array(["a"])), 422),
        "stored member shorter than its header": (_zip([("x.npy", 0, x[:-8], len(x) - 8)]), 422),
        "encrypted member": (_zip([("x.npy", 0, x, len(x))], flags=1), 422),
        "bzip2 member": (_zip([("x.npy", 12, x, len(x))]), 422),
        "broken deflate stream": (_zip([("x.npy", 8, b"\xff" * 64, len(x))]), 422),
        "not .npy inside": (_zip([("x.npy", 0, b"hello", 5)]), 422),
        "truncated archive": (_savez(x=np.ones(3))[:-10], 422),
        "member size past the archive's data": (_lying_size(_zip([("x.npy", 0, x, len(x))]), 1000),
                                                422),
        "not a zip": (b"PK\x05\x06" + b"\0" * 5, 422),
    }


HOSTILE_NPZ = _hostile_npz()


@pytest.mark.parametrize("case", list(HOSTILE_NPZ))
def test_hostile_npz_bodies_get_their_status(api, case):
    body, status = HOSTILE_NPZ[case]
    problem = assert_problem(api.post("/v1/gradient", params={"expression": "x"}, content=body,
                                      headers={"Content-Type": NPZ}), status)
    if case.startswith(("duplicate", "same name")):
        assert problem["errors"][0]["loc"] == ["body", "x"] and "'x'" in problem["detail"]


def test_a_compressed_npz_body_is_differentiated(api):
    x = np.linspace(0, 1, 101)
    response = api.post("/v1/gradient", params={"expression": "x**2"}, content=_savez(True, x=x),
                        headers={"Content-Type": NPZ, "Accept": NPZ})
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as answer:
        np.testing.assert_allclose(answer["gradient"][:, 0], 2 * x, rtol=1e-15)
