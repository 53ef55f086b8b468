"""Encoding arrays for the wire: JSON with documented non-finite numbers, and ``.npy``.

JSON has no NaN or infinity. labcrunch writes them as the strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"`` (the spellings Python's ``float()`` and JavaScript's ``Number()`` read
back); every other number is a JSON number. Large arrays travel as ``.npy`` (``application/x-npy``)
or, for several named arrays, ``.npz`` (``application/x-npz``); pickled objects are refused, and
sizes are checked from the headers before anything is loaded.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from typing import Any

import numpy as np

from labcrunch_service.errors import InvalidInput, LimitExceeded

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


def to_npy(array: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


class _Parts:
    """A write-only stream for zipfile that keeps the buffers it is given instead of copying them
    into a growing BytesIO (zipfile then writes a data descriptor per member)."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0

    def write(self, data: Any) -> int:
        self.parts.append(data)
        self.size += memoryview(data).nbytes
        return memoryview(data).nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass


def to_npz(arrays: dict[str, Any]) -> bytes:
    """The same .npz as ``np.savez`` (stored, no pickles), about 3x quicker for large arrays: each
    array's memory goes into the archive by reference and is copied once, by the final join."""
    out = _Parts()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise TypeError(f"array {name!r} has dtype {arr.dtype}: .npz answers carry no pickles")
            if not arr.flags.c_contiguous:
                arr = arr.copy()
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(arr))
                numeric = arr.dtype.kind in "fiub" and arr.size
                member.write(memoryview(arr.reshape(-1)).cast("B") if numeric else arr.tobytes())
    return b"".join(out.parts)


def read_npy(
    data: bytes, *, max_elements: int, where: str = "body", limit: str = "max_points",
    max_rows: int | None = None,
) -> np.ndarray:
    """Parse ``.npy`` bytes into a numeric array; 422 for anything else, 413 when too large.

    ``limit`` names the setting ``max_elements`` (or ``max_rows``, a bound on the first axis: a
    table of points) comes from, for the 413 answer.
    """
    try:
        buf = io.BytesIO(data)
        major, _minor = np.lib.format.read_magic(buf)
        read_header = (
            np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        )
        shape, _fortran, dtype = read_header(buf)  # header only: size checked before loading
    except Exception as exc:
        raise InvalidInput(
            f"The {where} is not a valid .npy array: {exc}",
            errors=[{"loc": [where], "msg": str(exc), "type": "npy"}],
        ) from None
    if max_rows is not None and shape and shape[0] > max_rows:
        raise LimitExceeded(
            f"The array has {shape[0]} rows; at most {max_rows} are accepted (limits.{limit}).",
            limit=limit, maximum=max_rows, value=shape[0],
        )
    count = math.prod(shape)
    if count > max_elements:
        raise LimitExceeded(
            f"The array has {count} elements; at most {max_elements} are accepted "
            f"(limits.{limit}).",
            limit=limit,
            maximum=max_elements,
            value=count,
        )
    if dtype.kind not in "fiu" or dtype.hasobject:
        raise InvalidInput(
            f"The {where} array has dtype {dtype}; a real numeric dtype is required.",
            errors=[{"loc": [where], "msg": f"dtype {dtype} not accepted", "type": "npy"}],
        )
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise InvalidInput(f"The {where} .npy array could not be read: {exc}") from None


def read_npz(
    data: bytes, *, max_arrays: int, max_elements: int, arrays_limit: str = "max_variables",
    elements_limit: str = "max_points", where: str = "body",
) -> dict[str, np.ndarray]:
    """Named numeric arrays from ``.npz`` bytes, each checked by :func:`read_npy` (numeric, no
    pickles, at most ``max_elements``) before it is loaded; 422 for a broken archive, 413 for
    more than ``max_arrays`` arrays. ``arrays_limit``/``elements_limit`` name the settings the
    maxima come from, for the 413 answer."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"The {where} is not a valid .npz archive: {exc}.",
                           errors=[{"loc": [where], "msg": str(exc), "type": "npz"}]) from None
    if len(members) > max_arrays:
        raise LimitExceeded(f"The .npz holds {len(members)} arrays; at most {max_arrays} "
                            f"{_limit_noun(arrays_limit)} are accepted (limits.{arrays_limit}).",
                            limit=arrays_limit, maximum=max_arrays, value=len(members))
    arrays = {}
    for member in members:
        name = member.filename.removesuffix(".npy")
        if member.file_size > 8 * max_elements + 4096:  # declared size, before inflating
            raise LimitExceeded(
                f"The .npz member {name!r} is {member.file_size} bytes; at most "
                f"{max_elements} {_limit_noun(elements_limit)} are accepted (limits.{elements_limit}).",
                limit=elements_limit, maximum=max_elements)
        arrays[name] = read_npy(archive.read(member), max_elements=max_elements, where=name,
                                limit=elements_limit)
    return arrays


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
