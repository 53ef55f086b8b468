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

try:  # ISA-L's CRC-32 (the server's dependency) is the same function, several times faster
    from isal.isal_zlib import crc32
except ImportError:
    from zlib import crc32

from labcrunch._constants import BINARY_THRESHOLD

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"
_NPY_HEADER_BYTES = 16_384  # numpy reads .npy headers of at most 10,000 bytes
# ZIP records (PKWARE APPNOTE 4.3): local file header, central directory entry, end record
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP32_LIMIT = 0xFFFFFFFF  # an archive this large needs ZIP64 records
_UTF8_NAME = 0x800
_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest a ZIP can say: no time stamp

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


def _npy_parts(arr: Any) -> list[Any]:
    """One array as the pieces of an .npy file: its header, then its memory in C order (copied
    only when it is not C-contiguous already). Object arrays (pickles) are refused."""
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise ValueError(f"an array of dtype {arr.dtype} cannot be sent: object arrays are pickles")
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    header = io.BytesIO()
    fields = np.lib.format.header_data_from_array_1_0(arr)
    try:
        np.lib.format.write_array_header_1_0(header, fields)
    except ValueError:  # a header over 64 KiB (numpy itself switches the same way)
        np.lib.format.write_array_header_2_0(header, fields)
    return [header.getvalue(), arr.reshape(-1).view(np.uint8)]


def to_npy(arr: Any) -> bytes:
    """One array as the bytes of an .npy file (no pickles), in one copy of its memory."""
    return b"".join(_npy_parts(arr))


def to_npz(arrays: Mapping[str, Any]) -> bytes:
    """Named arrays as the bytes of an .npz archive as ``np.savez`` writes it (stored members, no
    pickles), in one copy of their memory: numpy's writer (zipfile, a growing buffer, then its
    copy) took ~24 ms for the 16 MB of a 10⁶-point batch, this ~10 with zlib's CRC-32s (most of
    it), ~5 with ISA-L's.
    An archive of 4 GiB or more needs ZIP64 records: numpy writes that one."""
    members = [(f"{name}.npy".encode(), *_npy_parts(value)) for name, value in arrays.items()]
    size = _END.size + sum(_LOCAL.size + _CENTRAL.size + 2 * len(filename) + len(header) + data.nbytes
                           for filename, header, data in members)
    if size >= _ZIP32_LIMIT or len(members) >= 0xFFFF:
        return _savez(arrays)
    pieces: list[Any] = []
    directory: list[bytes] = []
    offset = 0
    for filename, header, data in members:
        length = len(header) + data.nbytes
        crc = crc32(data, crc32(header))
        # (signature, versions, flags: UTF-8 name, stored, time, date, CRC, sizes, name, extra)
        local = _LOCAL.pack(b"PK\x03\x04", 20, _UTF8_NAME, 0, 0, _DATE, crc, length, length,
                            len(filename), 0)
        directory.append(_CENTRAL.pack(b"PK\x01\x02", 20, 20, _UTF8_NAME, 0, 0, _DATE, crc, length,
                                       length, len(filename), 0, 0, 0, 0, 0, offset) + filename)
        pieces += [local, filename, header, data]
        offset += len(local) + len(filename) + length
    central = b"".join(directory)
    end = _END.pack(b"PK\x05\x06", 0, 0, len(directory), len(directory), len(central), offset, 0)
    return b"".join([*pieces, central, end])


def _savez(arrays: Mapping[str, Any]) -> bytes:
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
