"""Encoding arrays for the wire: JSON with documented non-finite numbers, ``.npy`` and ``.npz``.

JSON has no NaN or infinity. labcrunch writes them as the strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"`` (the spellings Python's ``float()`` and JavaScript's ``Number()`` read
back); every other number is a JSON number. Large arrays travel as ``.npy`` (``application/x-npy``)
or, for several named arrays, ``.npz`` (``application/x-npz``).

Reading a body is zero-copy and bounded. Every header -- the archive's directory, then each
member's ``.npy`` header (read from the first bytes of the member) -- is checked against the
limits before any array data is touched: member count, names (no duplicates), numeric dtype (no
pickles), each declared shape, and the total bytes the arrays declare. A stored member (what
``np.savez`` writes) then becomes a read-only view of the body; a deflated one
(``np.savez_compressed``) is inflated in chunks into an array of exactly the size its header
declared, never more, with the deadline checked between chunks. So a small body cannot inflate
into a large one (a "zip bomb") and no member is read before every member has been checked.
The CRC-32 of a member is not checked: the transport delivers the bytes intact, and a wrong one
cannot make the reader do more work.

Writing an ``.npz`` answer gives the list of buffers the file is made of (:func:`npz_parts`):
each array's own memory is one of them, uncopied, so a route can send them one after another
without joining them (``http.responses``). Members are stored, as ``np.savez`` writes them.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from isal.isal_zlib import crc32  # same CRC-32 as zlib's, several times faster

from labcrunch_service.errors import InvalidInput, LimitExceeded
from labcrunch_service.progress import check_deadline

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/x-npz"


def _non_finite_str(v: float) -> str:
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def jsonable(value: Any) -> Any:
    """numpy/JAX/TF arrays and scalars → plain JSON values, non-finite numbers as strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite_str(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        return arr.tolist()
    if arr.dtype.kind in "iu":
        return arr.tolist()
    if arr.dtype.kind == "f":
        if arr.ndim == 0:
            return jsonable(float(arr))
        arr = arr.astype(np.float64, copy=False)
        if np.isfinite(arr).all():
            return arr.tolist()
        obj = arr.astype(object)
        bad = ~np.isfinite(arr)
        obj[bad] = [_non_finite_str(v) for v in arr[bad]]
        return obj.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} of dtype {arr.dtype}")


def dumps(content: Any) -> bytes:
    """JSON bytes of already-jsonable content; refuses NaN so nothing invalid leaves."""
    return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


# --- .npy and .npz layouts ------------------------------------------------------------------

# ZIP records (PKWARE APPNOTE 4.3): local file header, central directory entry, end of central
# directory, and the ZIP64 end record and its locator.
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_FULL16, _FULL32 = 0xFFFF, 0xFFFFFFFF  # "see the ZIP64 record"
_STORED, _DEFLATED = 0, 8
_UTF8_NAME = 0x800  # general purpose flag: the name is UTF-8 (else CP437)
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01: answers carry no time stamp

#: Bytes read (or inflated) to find a member's .npy header: numpy writes a few hundred and
#: refuses to parse more than 10,000 (``max_header_size``).
NPY_HEADER_BYTES = 16_384
#: Inflated bytes per step of a deflated member (the deadline is checked between steps).
INFLATE_CHUNK = 1 << 20


class _Broken(ValueError):
    """The bytes are not the format they claim to be (a 422 where the reader reports it)."""


def _unpack(record: struct.Struct, view: memoryview, at: int) -> tuple[Any, ...]:
    if at < 0 or at + record.size > len(view):
        raise _Broken("a record lies outside the archive")
    return record.unpack_from(view, at)


def _npy_layout(prefix: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, Fortran order, dtype, offset of the data) from the first bytes of an .npy file."""
    buf = io.BytesIO(prefix)
    major, minor = np.lib.format.read_magic(buf)
    if major not in (1, 2):
        raise _Broken(f".npy format version {major}.{minor} is not supported")
    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(buf)
    if any(d < 0 for d in shape):
        raise _Broken(f"negative dimension in shape {shape}")
    return shape, fortran, dtype, buf.tell()


def _checked_count(shape: tuple[int, ...], dtype: np.dtype, *, what: str, loc: list[str],
                   max_elements: int, limit: str, max_rows: int | None = None) -> int:
    """The element count of a declared array after its checks: 413 over a size limit, 422 for a
    dtype that is not real and numeric (no pickles)."""
    if max_rows is not None and shape and shape[0] > max_rows:
        raise LimitExceeded(
            f"The array has {shape[0]} rows; at most {max_rows} are accepted (limits.{limit}).",
            limit=limit, maximum=max_rows, value=shape[0])
    count = math.prod(shape)
    if count > max_elements:
        raise LimitExceeded(
            f"The {what} has {count} elements; at most {max_elements} {_limit_noun(limit)} are "
            f"accepted (limits.{limit}).", limit=limit, maximum=max_elements, value=count)
    if dtype.kind not in "fiu" or dtype.hasobject:
        raise InvalidInput(
            f"The {what} has dtype {dtype}; a real numeric dtype is required.",
            errors=[{"loc": loc, "msg": f"dtype {dtype} not accepted", "type": "npy"}])
    return count


def _view(buffer: memoryview, dtype: np.dtype, shape: tuple[int, ...], fortran: bool,
          offset: int) -> np.ndarray:
    """The array laid out in ``buffer`` from ``offset``: a view, not a copy."""
    flat = np.frombuffer(buffer, dtype=dtype, count=math.prod(shape), offset=offset)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def read_npy(
    data: bytes, *, max_elements: int, where: str = "body", limit: str = "max_points",
    max_rows: int | None = None,
) -> np.ndarray:
    """The numeric array of ``.npy`` bytes, a read-only view of them; 422 for anything else, 413
    when too large (checked from the header, before the data is read).

    ``limit`` names the setting ``max_elements`` (or ``max_rows``, a bound on the first axis: a
    table of points) comes from, for the 413 answer.
    """
    view = memoryview(data)
    try:
        shape, fortran, dtype, offset = _npy_layout(bytes(view[:NPY_HEADER_BYTES]))
    except ValueError as exc:
        raise InvalidInput(
            f"The {where} is not a valid .npy array: {exc}",
            errors=[{"loc": [where], "msg": str(exc), "type": "npy"}]) from None
    count = _checked_count(shape, dtype, what=f"{where} array", loc=[where],
                           max_elements=max_elements, limit=limit, max_rows=max_rows)
    if len(view) - offset != count * dtype.itemsize:
        msg = (f"{len(view) - offset} bytes of data where its header declares "
               f"{count * dtype.itemsize} ({shape}, {dtype})")
        raise InvalidInput(f"The {where} .npy array has {msg}.",
                           errors=[{"loc": [where], "msg": msg, "type": "npy"}])
    return _view(view, dtype, shape, fortran, offset)


@dataclass(frozen=True)
class _Member:
    """One file of a ZIP archive: where its (compressed) bytes lie."""

    name: str
    method: int
    start: int
    size: int


def _zip64_sizes(extra: bytes, size: int, declared: int, offset: int) -> tuple[int, int]:
    """(compressed size, local header offset) from a ZIP64 extra field, for the fields that the
    directory entry marks as "in the ZIP64 record"."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        if kind == 0x0001:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, at + 4)) \
                if at + 4 + length <= len(extra) else []
            wanted = [field == _FULL32 for field in (declared, size, offset)]
            if len(values) < sum(wanted):
                break
            found = iter(values)
            declared, size, offset = (next(found) if full else field for full, field in
                                      zip(wanted, (declared, size, offset), strict=True))
            return size, offset
        at += 4 + length
    raise _Broken("a member's ZIP64 sizes are missing")


def _directory(view: memoryview, max_members: int, members_limit: str) -> list[_Member]:
    """The members of a ZIP archive, from its end record and central directory; 413 for more
    than ``max_members``, counted from the end record before the directory is read."""
    tail_start = max(0, len(view) - _END.size - _FULL16)
    tail = bytes(view[tail_start:])
    at = len(tail) - _END.size
    if at < 0 or tail[at:at + 4] != b"PK\x05\x06":  # no archive comment: the usual case
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END.size > len(tail):
        raise _Broken("no end of central directory record (not a ZIP archive)")
    (_, disk, directory_disk, on_disk, count, directory_size, directory_offset,
     comment) = _END.unpack_from(tail, at)
    end_at = tail_start + at
    if end_at + _END.size + comment != len(view):
        raise _Broken("bytes after the end of the archive")
    if _FULL16 in (on_disk, count) or _FULL32 in (directory_size, directory_offset):
        signature, _, end64_at, _ = _unpack(_END64_LOCATOR, view, end_at - _END64_LOCATOR.size)
        if signature != b"PK\x06\x07":
            raise _Broken("no ZIP64 end of central directory locator")
        (signature, _, _, _, disk, directory_disk, on_disk, count, directory_size,
         directory_offset) = _unpack(_END64, view, end64_at)
        if signature != b"PK\x06\x06":
            raise _Broken("no ZIP64 end of central directory record")
        end_at = end64_at
    if disk or directory_disk or on_disk != count:
        raise _Broken("the archive spans several disks")
    if count > max_members:
        raise LimitExceeded(f"The .npz holds {count} arrays; at most {max_members} "
                            f"{_limit_noun(members_limit)} are accepted (limits.{members_limit}).",
                            limit=members_limit, maximum=max_members, value=count)
    directory_end = directory_offset + directory_size
    if directory_end > end_at:
        raise _Broken("the central directory lies outside the archive")
    members, at = [], directory_offset
    for _ in range(count):
        (signature, _, _, flags, method, _, _, _, size, declared, name_length, extra_length,
         comment_length, _, _, _, local) = _unpack(_CENTRAL, view, at)
        if signature != b"PK\x01\x02" or at + _CENTRAL.size + name_length > directory_end:
            raise _Broken("a central directory entry is broken")
        at += _CENTRAL.size
        name = bytes(view[at:at + name_length]).decode("utf-8" if flags & _UTF8_NAME else "cp437")
        if _FULL32 in (size, declared, local):
            size, local = _zip64_sizes(bytes(view[at + name_length:at + name_length + extra_length]),
                                       size, declared, local)
        at += name_length + extra_length + comment_length
        if flags & 0x1:
            raise _Broken(f"member {name!r} is encrypted")
        if method not in (_STORED, _DEFLATED):
            raise _Broken(f"member {name!r} uses compression method {method} (only stored "
                          "and deflated members are read)")
        signature, *_, local_name, local_extra = _unpack(_LOCAL, view, local)
        if signature != b"PK\x03\x04":
            raise _Broken(f"member {name!r} has no local header")
        start = local + _LOCAL.size + local_name + local_extra
        if start + size > directory_offset:
            raise _Broken(f"member {name!r} runs past the archive's data")
        members.append(_Member(name, method, start, size))
    if at > directory_end:
        raise _Broken("the central directory is longer than its end record says")
    return members


def _header_bytes(view: memoryview, member: _Member) -> bytes:
    """The first bytes of a member (inflated when deflated), enough for its .npy header."""
    data = view[member.start:member.start + member.size]
    if member.method == _STORED:
        return bytes(data[:NPY_HEADER_BYTES])
    # A few times the header's size in compressed input is plenty for a real writer; a stream
    # that needs more to produce its header is refused as a broken header.
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[:4 * NPY_HEADER_BYTES],
                                                         NPY_HEADER_BYTES)


def _inflate_into(data: memoryview, skip: int, out: memoryview) -> None:
    """Inflate ``data`` (raw deflate) into ``out`` after dropping its first ``skip`` bytes, in
    steps of at most INFLATE_CHUNK; the stream must hold exactly ``skip + len(out)`` bytes."""
    wanted = skip + len(out)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = fed = 0
    pending: bytes | memoryview = b""
    while not inflater.eof:
        check_deadline()
        if not pending:
            if fed >= len(data):
                raise _Broken("its data ends before the end of its deflate stream")
            pending = data[fed:fed + INFLATE_CHUNK]
            fed += len(pending)
        # At most one byte past what the header declares: enough to see that there is more.
        piece = inflater.decompress(pending, min(INFLATE_CHUNK, wanted - produced + 1))
        if not piece and len(inflater.unconsumed_tail) == len(pending) and pending:
            raise _Broken("its deflate stream makes no progress")
        pending = inflater.unconsumed_tail
        if produced + len(piece) > wanted:
            raise _Broken("it inflates to more bytes than its .npy header declares")
        low = max(skip - produced, 0)
        if low < len(piece):
            at = produced + low - skip
            out[at:at + len(piece) - low] = piece[low:]
        produced += len(piece)
    if produced != wanted:
        raise _Broken(f"it inflates to {produced} bytes; its .npy header declares {wanted}")


def read_npz(
    data: bytes, *, max_arrays: int, max_elements: int, max_total_bytes: int,
    arrays_limit: str = "max_variables", elements_limit: str = "max_points",
    total_limit: str = "max_body_bytes", where: str = "body",
) -> dict[str, np.ndarray]:
    """Named numeric arrays from ``.npz`` bytes (see the module's docstring for the order of the
    checks): 422 for a broken archive or member, a name used twice or a non-numeric dtype; 413
    for more than ``max_arrays`` arrays, an array over ``max_elements`` elements, or arrays that
    declare more than ``max_total_bytes`` together. ``*_limit`` name the settings the maxima
    come from, for the 413 answer. Stored members are read-only views of ``data``."""
    view = memoryview(data)
    try:
        members = _directory(view, max_arrays, arrays_limit)
    except (ValueError, struct.error) as exc:
        raise InvalidInput(f"The {where} is not a valid .npz archive: {exc}.",
                           errors=[{"loc": [where], "msg": str(exc), "type": "npz"}]) from None
    layouts, total = {}, 0
    for member in members:
        name = member.name.removesuffix(".npy")
        loc = [where, name]
        if name in layouts:
            raise InvalidInput(f"The .npz holds two arrays named {name!r}; names must be distinct.",
                               errors=[{"loc": loc, "msg": "duplicate array name",
                                        "type": "duplicate"}])
        try:
            shape, fortran, dtype, offset = _npy_layout(_header_bytes(view, member))
        except (ValueError, zlib.error) as exc:
            raise InvalidInput(f"The .npz member {name!r} is not a valid .npy array: {exc}",
                               errors=[{"loc": loc, "msg": str(exc), "type": "npy"}]) from None
        count = _checked_count(shape, dtype, what=f".npz member {name!r}", loc=loc,
                               max_elements=max_elements, limit=elements_limit)
        nbytes = count * dtype.itemsize
        if member.method == _STORED and member.size != offset + nbytes:
            msg = (f"{member.size - offset} bytes of data where its header declares {nbytes} "
                   f"({shape}, {dtype})")
            raise InvalidInput(f"The .npz member {name!r} has {msg}.",
                               errors=[{"loc": loc, "msg": msg, "type": "npy"}])
        total += nbytes
        layouts[name] = (member, shape, fortran, dtype, offset)
    if total > max_total_bytes:
        raise LimitExceeded(
            f"The arrays of the .npz declare {total} bytes together; at most {max_total_bytes} "
            f"are accepted, compressed or not (limits.{total_limit}).",
            limit=total_limit, maximum=max_total_bytes, value=total)
    arrays = {}
    for name, (member, shape, fortran, dtype, offset) in layouts.items():
        if member.method == _STORED:
            arrays[name] = _view(view, dtype, shape, fortran, member.start + offset)
            continue
        flat = np.empty(math.prod(shape), dtype)
        try:
            _inflate_into(view[member.start:member.start + member.size], offset,
                          memoryview(flat.view(np.uint8)))
        except (ValueError, zlib.error) as exc:
            raise InvalidInput(f"The .npz member {name!r} is broken: {exc}",
                               errors=[{"loc": [where, name], "msg": str(exc),
                                        "type": "npz"}]) from None
        arrays[name] = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return arrays


def _npy_header(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return buf.getvalue()


def npy_parts(array: Any) -> list[bytes | memoryview]:
    """The ``.npy`` file of ``array`` (no pickles) as its header and the array's own memory."""
    arr = np.asarray(array)
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    if arr.dtype.hasobject:
        raise TypeError(f"dtype {arr.dtype}: .npy answers carry no pickles")
    return [_npy_header(arr), memoryview(arr.reshape(-1).view(np.uint8))]


def npz_parts(arrays: Mapping[str, Any]) -> list[bytes | memoryview]:
    """The ``.npz`` of named ``arrays`` (what ``np.savez`` writes: stored members, no pickles)
    as the buffers it is made of, in order; each array's memory is one of them, uncopied."""
    parts: list[bytes | memoryview] = []
    directory = []
    offset = 0
    for name, value in arrays.items():
        header, payload = npy_parts(value)
        filename = f"{name}.npy".encode()
        flags = 0 if filename.isascii() else _UTF8_NAME
        size = len(header) + len(payload)
        checksum = crc32(payload, crc32(header))
        if offset + size >= _FULL32 or len(directory) >= _FULL16 - 1:
            raise ValueError("an .npz answer of 4 GiB or 65,535 arrays needs ZIP64: not written")
        local = _LOCAL.pack(b"PK\x03\x04", 20, flags, _STORED, 0, _DOS_DATE, checksum, size, size,
                            len(filename), 0)
        directory.append(_CENTRAL.pack(b"PK\x01\x02", 20, 20, flags, _STORED, 0, _DOS_DATE,
                                       checksum, size, size, len(filename), 0, 0, 0, 0,
                                       0o644 << 16, offset) + filename)
        parts += [local + filename, header, payload]
        offset += len(local) + len(filename) + size
    central = b"".join(directory)
    parts += [central, _END.pack(b"PK\x05\x06", 0, 0, len(directory), len(directory), len(central),
                                 offset, 0)]
    return parts


def to_npy(array: Any) -> bytes:
    """The ``.npy`` file of ``array`` as one bytes object (see :func:`npy_parts`)."""
    return b"".join(npy_parts(array))


def to_npz(arrays: Mapping[str, Any]) -> bytes:
    """The ``.npz`` of named ``arrays`` as one bytes object (see :func:`npz_parts`)."""
    return b"".join(npz_parts(arrays))


def _limit_noun(limit: str) -> str:
    """What a limit counts, from its name: ``max_points`` → ``points``."""
    return limit.removeprefix("max_").replace("_", " ")


def read_npy_columns(
    data: bytes, names: tuple[str, ...], *, required: int | None = None, max_rows: int,
    limit: str, where: str = "body",
) -> dict[str, np.ndarray]:
    """A ``.npy`` table of shape (N, k) as named columns ``names[:k]``.

    ``k`` runs from ``required`` (default: every name) to ``len(names)``; any other shape is a
    422, more than ``max_rows`` rows a 413 naming ``limit``.
    """
    least = len(names) if required is None else required
    table = read_npy(data, max_elements=len(names) * max_rows, where=where, limit=limit,
                     max_rows=max_rows)
    if table.ndim != 2 or not least <= table.shape[1] <= len(names):
        shapes = " or ".join(f"(N, {k}) [{', '.join(names[:k])}]" for k in range(least, len(names) + 1))
        raise InvalidInput(
            f"The .npy {where} has shape {table.shape}; expected {shapes}.",
            errors=[{"loc": [where], "msg": f"shape {table.shape}", "type": "shape"}])
    return {name: table[:, i] for i, name in enumerate(names[: table.shape[1]])}
