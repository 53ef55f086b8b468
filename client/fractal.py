"""Mandelbrot and Julia sets: ``Client.fractal`` (a PNG), ``Client.fractal_counts`` (the escape
counts as numpy arrays) and ``Client.fractal_tile`` (a 256×256 map tile)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from labcrunch._arrays import array, from_npy
from labcrunch._base import Call, endpoint, json_answer
from labcrunch._repr import ShortRepr
from labcrunch._types import DType

#: The sets the server draws.
FractalKind = Literal["mandelbrot", "julia"]

#: Colour tables of the PNG; ``seed`` is the seed notebook's log-normalised shading.
Colormap = Literal["viridis", "magma", "inferno", "plasma", "cividis", "gray", "seed"]

#: How escape counts travel: one int32 .npy array, or JSON lists (with the smooth counts).
CountsFormat = Literal["npy", "json"]


@dataclass(frozen=True, repr=False)
class FractalImage(ShortRepr):
    """A rendered PNG: its bytes, and where and how fast it was computed."""

    data: bytes
    elapsed_ms: float | None
    device: str | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, read from the PNG header."""
        if self.data[:8] != b"\x89PNG\r\n\x1a\n" or len(self.data) < 24:
            raise ValueError("not a PNG image")
        return int.from_bytes(self.data[16:20], "big"), int.from_bytes(self.data[20:24], "big")

    def __repr__(self) -> str:  # a script prints the size, not the bytes; Jupyter shows the picture
        try:
            width, height = self.size
            what = f"{width}×{height} PNG"
        except ValueError:
            what = "not a PNG"
        timing = "" if self.elapsed_ms is None else f", {self.elapsed_ms:.1f} ms"
        where = "" if self.device is None else f" on {self.device}"
        return f"FractalImage({what}, {len(self.data):,} bytes{timing}{where})"

    def save(self, path: str | Path) -> Path:
        """Write the PNG to ``path``; returns the path."""
        path = Path(path)
        path.write_bytes(self.data)
        return path

    def image(self) -> Any:
        """The PNG as a ``PIL.Image.Image`` (needs Pillow, which the client does not depend on)."""
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("FractalImage.image() needs Pillow: pip install pillow") from exc
        return Image.open(io.BytesIO(self.data))

    def _repr_png_(self) -> bytes:  # shows inline in Jupyter
        return self.data


@dataclass(frozen=True, repr=False)
class FractalCounts(ShortRepr):
    """Escape counts of every pixel, row 0 at the top (y_max).

    Attributes:
        counts: int32 array (height, width); ``max_iter`` for points that never escaped.
        smooth: Continuous counts (float64, JSON answers with ``smooth``), else None.
        box: The view ``{"x_min", "x_max", "y_min", "y_max"}`` (JSON answers; None for .npy).
        kind, max_iter: What was computed.
        elapsed_ms, device: How fast and where (None when the server did not say).

    ``counts`` from an .npy answer is a read-only view of the answer's bytes, not a copy.
    """

    counts: np.ndarray
    smooth: np.ndarray | None
    box: dict[str, float] | None
    kind: str
    max_iter: int
    elapsed_ms: float | None
    device: str | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FractalCounts:
        """The counts from the server's JSON answer (``format="json"``)."""
        smooth = body.get("smooth")
        return cls(counts=np.asarray(body["counts"], dtype=np.int32),
                   smooth=None if smooth is None else array(smooth),
                   box={k: float(v) for k, v in body["box"].items()}, kind=body["kind"],
                   max_iter=int(body["max_iter"]), elapsed_ms=float(body["elapsed_ms"]),
                   device=body["device"])

    @classmethod
    def from_npy(cls, counts: np.ndarray, *, kind: str, max_iter: int,
                 elapsed_ms: float | None = None, device: str | None = None) -> FractalCounts:
        """The counts from the server's .npy answer (``format="npy"``): the array alone, so the
        request's ``kind`` and ``max_iter`` and the answer's headers fill in the rest."""
        return cls(counts=np.asarray(counts, dtype=np.int32), smooth=None, box=None, kind=kind,
                   max_iter=int(max_iter), elapsed_ms=elapsed_ms, device=device)


def _timing(response: httpx.Response) -> tuple[float | None, str | None]:
    elapsed = response.headers.get("x-elapsed-ms")
    return (float(elapsed) if elapsed else None), response.headers.get("x-device")


def _image(response: httpx.Response) -> FractalImage:
    return FractalImage(response.content, *_timing(response))


def _given(**options: Any) -> dict[str, Any]:
    """The options a caller gave (None: the server's default)."""
    return {k: v for k, v in options.items() if v is not None}


class FractalAPI:
    """The fractal methods of :class:`labcrunch.Client` and :class:`labcrunch.AsyncClient`.

    A view is a box (``x_min``, ``x_max``, ``y_min``, ``y_max``, all four) or a center and a
    width (``center_x``, ``center_y``, ``scale``); by default the whole set.
    """

    @endpoint
    def fractal(
        self,
        kind: FractalKind = "mandelbrot",
        *,
        width: int = 512,
        height: int = 512,
        max_iter: int = 1000,
        x_min: float | None = None,
        x_max: float | None = None,
        y_min: float | None = None,
        y_max: float | None = None,
        center_x: float | None = None,
        center_y: float | None = None,
        scale: float | None = None,
        c_re: float | None = None,
        c_im: float | None = None,
        colormap: Colormap | None = None,
        smooth: bool | None = None,
        precision: DType | None = None,
        escape_radius: float | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[FractalImage]:
        """Render the Mandelbrot or a Julia set as a PNG (``POST /v1/fractal``).

        Example:
            >>> picture = lc.fractal("julia", width=40, height=30, max_iter=50, colormap="inferno")
            >>> picture.data[:4], picture.image().size
            (b'\\x89PNG', (40, 30))

        Args:
            kind: ``"mandelbrot"`` or ``"julia"``.
            width: Pixels across.
            height: Pixels down.
            max_iter: Iterations at most per pixel.
            x_min: Left edge of the view (a box gives all four edges).
            x_max: Right edge.
            y_min: Bottom edge.
            y_max: Top edge.
            center_x: Center of the view (with ``center_y`` and ``scale``).
            center_y: Center of the view.
            scale: Width of the view in the plane.
            c_re: Julia constant, real part.
            c_im: Julia constant, imaginary part.
            colormap: ``"viridis"``, ``"magma"``, ``"inferno"``, ``"plasma"``, ``"cividis"``,
                ``"gray"`` or ``"seed"``.
            smooth: Shade by continuous instead of whole counts.
            precision: ``"float32"`` or ``"float64"``.
            escape_radius: |z| beyond which a point has escaped.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            FractalImage: the PNG bytes (``.save(path)``, ``.image()``, shown inline in Jupyter).

        Raises:
            ValidationError: An inconsistent view, an unknown kind or colormap (422).
            RequestTooLargeError: Pixels or pixel iterations over a server limit (413).
        """
        body = _given(kind=kind, width=width, height=height, max_iter=max_iter, format="png",
                      x_min=x_min, x_max=x_max, y_min=y_min, y_max=y_max, center_x=center_x,
                      center_y=center_y, scale=scale, c_re=c_re, c_im=c_im, colormap=colormap,
                      smooth=smooth, precision=precision, escape_radius=escape_radius)
        return Call("POST", "/v1/fractal", _image, json=body, timeout=timeout, max_retries=max_retries)

    @endpoint
    def fractal_counts(
        self,
        kind: FractalKind = "mandelbrot",
        *,
        width: int = 512,
        height: int = 512,
        max_iter: int = 1000,
        x_min: float | None = None,
        x_max: float | None = None,
        y_min: float | None = None,
        y_max: float | None = None,
        center_x: float | None = None,
        center_y: float | None = None,
        scale: float | None = None,
        c_re: float | None = None,
        c_im: float | None = None,
        smooth: bool | None = None,
        precision: DType | None = None,
        escape_radius: float | None = None,
        format: CountsFormat = "npy",
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[FractalCounts]:
        """The escape count of every pixel as numpy arrays (``POST /v1/fractal``).

        Example:
            >>> lc.fractal_counts(width=5, height=3, max_iter=20, x_min=-2, x_max=1, y_min=-1,
            ...                   y_max=1).counts
            array([[ 3,  3, 11, 11,  3],
                   [20, 20, 20, 20,  3],
                   [ 3,  3, 11, 11,  3]], dtype=int32)

        Args:
            kind, width, height, max_iter, x_min, x_max, y_min, y_max, center_x, center_y,
                scale, c_re, c_im, precision, escape_radius: As for :meth:`fractal`.
            smooth: With ``format="json"``, also the continuous counts.
            format: ``"npy"`` (one int32 array; fast, any size) or ``"json"`` (lists, with the
                smooth counts and the view's box; up to the server's ``max_json_pixels``).
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            FractalCounts: ``counts`` as an int32 (height, width) array, row 0 at ``y_max``.

        Raises:
            ValidationError: An inconsistent view or an unknown kind (422).
            RequestTooLargeError: Pixels or pixel iterations over a server limit (413).
        """
        body = _given(kind=kind, width=width, height=height, max_iter=max_iter, format=format,
                      x_min=x_min, x_max=x_max, y_min=y_min, y_max=y_max, center_x=center_x,
                      center_y=center_y, scale=scale, c_re=c_re, c_im=c_im, smooth=smooth,
                      precision=precision, escape_radius=escape_radius)
        if format == "json":
            return Call("POST", "/v1/fractal", json_answer(FractalCounts.from_json), json=body,
                        timeout=timeout, max_retries=max_retries)

        def read_npy(response: httpx.Response) -> FractalCounts:
            elapsed_ms, device = _timing(response)
            return FractalCounts.from_npy(from_npy(response.content), kind=kind, max_iter=max_iter,
                                          elapsed_ms=elapsed_ms, device=device)

        return Call("POST", "/v1/fractal", read_npy, json=body, timeout=timeout,
                    max_retries=max_retries)

    @endpoint
    def fractal_tile(
        self,
        z: int,
        x: int,
        y: int,
        *,
        kind: FractalKind = "mandelbrot",
        max_iter: int | None = None,
        c_re: float | None = None,
        c_im: float | None = None,
        colormap: Colormap | None = None,
        smooth: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Call[FractalImage]:
        """A 256×256 PNG map tile in the XYZ scheme (``GET /v1/fractal/tiles/{z}/{x}/{y}.png``).

        Tile (0, 0, 0) covers the world box x in [-2.5, 1.5], y in [-2, 2]; row ``y = 0`` is the
        top. Tiles never change for the same URL, so browsers and proxies may keep them.

        Example:
            >>> lc.fractal_tile(2, 1, 1, colormap="gray", max_iter=40).image().size
            (256, 256)

        Args:
            z: Zoom level (0: one tile for the world).
            x: Column, 0 ≤ x < 2**z.
            y: Row, 0 ≤ y < 2**z.
            kind: ``"mandelbrot"`` or ``"julia"``.
            max_iter: Iterations at most (default grows with zoom: 256 + 128 z).
            c_re, c_im: The Julia constant.
            colormap, smooth: As for :meth:`fractal`.
            timeout: Seconds to wait for the answer (default: the client's).
            max_retries: Retries of this call (default: the client's).

        Returns:
            FractalImage: the tile's PNG.

        Raises:
            NotFoundError: A tile outside the grid of its zoom level (404).
            RequestTooLargeError: A zoom level over the server's ``max_tile_zoom`` (413).
        """
        query = _given(kind=kind, max_iter=max_iter, c_re=c_re, c_im=c_im, colormap=colormap,
                       smooth=smooth)
        return Call("GET", f"/v1/fractal/tiles/{z}/{x}/{y}.png", _image, params=query,
                    timeout=timeout, max_retries=max_retries)
