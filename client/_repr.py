"""Short reprs for results: shapes and key numbers, never the data (a line fit's result carries
its million points; printing it should take one line, not megabytes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Arrays with at most this many numbers are printed in full; larger ones by dtype and shape.
SMALL_ARRAY = 8
#: Lists and dicts with more entries than this are printed by their length.
SMALL_CONTAINER = 8


def short(value: Any) -> str:
    """A compact text for one field value."""
    if isinstance(value, np.ndarray):
        if value.size <= SMALL_ARRAY:
            text = np.array2string(value, precision=6, separator=", ", threshold=SMALL_ARRAY,
                                   max_line_width=10_000)
            return " ".join(text.split())  # rows of a matrix on one line
        return f"<{value.dtype} array {'×'.join(map(str, value.shape))}>"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    if isinstance(value, ShortRepr):
        return repr(value)
    if isinstance(value, Mapping):
        if len(value) > SMALL_CONTAINER:
            return f"{{{len(value)} entries}}"
        return "{" + ", ".join(f"{k!r}: {short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        if len(value) > SMALL_CONTAINER:
            return f"[{len(value)} items]"
        inside = ", ".join(short(v) for v in value)
        return f"({inside}{',' if len(value) == 1 else ''})" if isinstance(value, tuple) else f"[{inside}]"
    return repr(value)


class ShortRepr:
    """Gives a dataclass (declared with ``repr=False``) a repr of short field values."""

    def __repr__(self) -> str:
        shown = [f"{f.name}={short(getattr(self, f.name))}"
                 for f in dataclasses.fields(self) if f.repr]  # type: ignore[arg-type]
        return f"{type(self).__name__}({', '.join(shown)})"
