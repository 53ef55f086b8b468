"""Numbers and arrays in answers and requests: JSON numbers (non-finite ones spelled as strings)
and .npy/.npz bodies."""

from __future__ import annotations

import io
import math
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from labcrunch._constants import BINARY_THRESHOLD

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"
_NPY_HEADER_BYTES = 16_384  # numpy reads .npy headers of at most 10,000 bytes

#: JSON has no NaN or infinity: the server writes (and reads) them as these strings.
NON_FINITE: Mapping[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def number(value: Any) -> float:
    """A JSON number, or one of the :data:`NON_FINITE` spellings, as a float."""
    if isinstance(value, str):
        return NON_FINITE[value]
    return float(value)


def array(value: Any, dtype: Any = np.float64) -> np.ndarray:
    """A JSON number or nested lists (with :data:`NON_FINITE` spellings) as a numpy array."""
    return np.asarray(_numbers(value), dtype=dtype)


def spell(value: float) -> float | str:
    """A float as JSON writes it: itself, or its :data:`NON_FINITE` spelling."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def json_numbers(values: Any) -> Any:
    """A number or an array (any shape) as JSON: a number or nested lists, non-finite values spelled
    as in :data:`NON_FINITE`."""
    arr = np.asarray(values, dtype=np.float64)
    if np.isfinite(arr).all():
        return arr.tolist()
    return _spelled(arr.tolist())


def binary_wanted(binary: bool | None, size: int) -> bool:
    """``binary`` when given; otherwise whether ``size`` numbers are enough to travel as .npy/.npz."""
    return size >= BINARY_THRESHOLD if binary is None else binary


def _numbers(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        return NON_FINITE[value]
    return value


def _spelled(value: Any) -> Any:
    if isinstance(value, list):
        return [_spelled(v) for v in value]
    return spell(value)


def to_npy(arr: Any) -> bytes:
    """One array as the bytes of an .npy file (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def to_npz(arrays: Mapping[str, Any]) -> bytes:
    """Named arrays as the bytes of an .npz archive (no pickles)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buf.getvalue()


def from_npy(data: bytes | memoryview) -> np.ndarray:
    """The array of an .npy body: a read-only view of ``data``, not a copy (``.copy()`` it to
    change it); object arrays (pickles) are refused."""
    buf = io.BytesIO(data[:_NPY_HEADER_BYTES])
    major, _minor = np.lib.format.read_magic(buf)
    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(buf)
    if dtype.hasobject:
        raise ValueError(f"the .npy array has dtype {dtype}: object arrays are refused")
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=buf.tell())
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def from_npz(data: bytes) -> dict[str, np.ndarray]:
    """The named arrays of an .npz body. Stored members (what the server writes) are read-only
    views of ``data``, not copies; compressed ones are read by numpy. Object arrays (pickles)
    are refused."""
    view = memoryview(data)
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            # The local header's name and extra field may differ in length from the directory's.
            name_length, extra_length = struct.unpack_from("<2H", view, info.header_offset + 26)
            start = info.header_offset + 30 + name_length + extra_length
            arrays[name] = from_npy(view[start:start + info.file_size])
    return arrays
