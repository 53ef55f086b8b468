"""Client methods and result types for the fractal endpoints.

    counts = lc.fractal("mandelbrot", width=800, height=600, format="npy")   # int32 array
    lc.fractal("julia", c_re=-0.8, c_im=0.156).save("julia.png")            # PNG on disk
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from labcrunch._arrays import NPY_MEDIA_TYPE, array, from_npy
from labcrunch._base import Call


@dataclass(frozen=True)
class FractalImage:
    """A rendered PNG: its bytes, where and how fast it was computed."""

    data: bytes
    elapsed_ms: float | None
    device: str | None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.data)
        return path

    def image(self) -> Any:
        """A ``PIL.Image.Image`` (needs Pillow, which the client does not depend on)."""
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("FractalImage.image() needs Pillow: pip install pillow") from exc
        return Image.open(io.BytesIO(self.data))

    def _repr_png_(self) -> bytes:  # shows inline in Jupyter
        return self.data


@dataclass(frozen=True)
class FractalCounts:
    """The JSON answer: counts (int) and smooth counts (float, when asked) as numpy arrays."""

    counts: np.ndarray
    smooth: np.ndarray | None
    box: dict[str, float]
    max_iter: int
    elapsed_ms: float
    device: str


def _timing(response: httpx.Response) -> tuple[float | None, str | None]:
    elapsed = response.headers.get("x-elapsed-ms")
    return (float(elapsed) if elapsed else None), response.headers.get("x-device")


def _image(response: httpx.Response) -> FractalImage:
    return FractalImage(response.content, *_timing(response))


def _read(response: httpx.Response) -> Any:
    media_type = response.headers.get("content-type", "")
    if media_type.startswith("image/png"):
        return _image(response)
    if media_type.startswith(NPY_MEDIA_TYPE):
        return from_npy(response.content)
    body = response.json()
    smooth = body.get("smooth")
    return FractalCounts(
        counts=np.asarray(body["counts"], dtype=np.int32),
        smooth=None if smooth is None else array(smooth),
        box=body["box"], max_iter=int(body["max_iter"]),
        elapsed_ms=float(body["elapsed_ms"]), device=body["device"],
    )


class FractalAPI:
    """Mixin: every method builds a Call and returns ``self._send(call)``."""

    def fractal(
        self,
        kind: str = "mandelbrot",
        *,
        width: int = 512,
        height: int = 512,
        max_iter: int = 1000,
        format: str = "png",
        x_min: float | None = None,
        x_max: float | None = None,
        y_min: float | None = None,
        y_max: float | None = None,
        center_x: float | None = None,
        center_y: float | None = None,
        scale: float | None = None,
        c_re: float | None = None,
        c_im: float | None = None,
        colormap: str | None = None,
        smooth: bool | None = None,
        precision: str | None = None,
        escape_radius: float | None = None,
    ) -> Any:
        """``POST /v1/fractal``. The view is a box (x_min..y_max) or centre + scale (width).

        format ``png`` → :class:`FractalImage` (``.save(path)``, ``.image()``); ``npy`` → the
        counts as an int32 (height, width) array, row 0 at y_max; ``json`` →
        :class:`FractalCounts`. Parameters left as None take the server's defaults.
        """
        given = {
            "kind": kind, "width": width, "height": height, "max_iter": max_iter, "format": format,
            "x_min": x_min, "x_max": x_max, "y_min": y_min, "y_max": y_max,
            "center_x": center_x, "center_y": center_y, "scale": scale, "c_re": c_re, "c_im": c_im,
            "colormap": colormap, "smooth": smooth, "precision": precision,
            "escape_radius": escape_radius,
        }
        body = {k: v for k, v in given.items() if v is not None}
        return self._send(Call("POST", "/v1/fractal", json=body, parse=_read))

    def fractal_tile(self, z: int, x: int, y: int, *, kind: str = "mandelbrot",
                     **params: Any) -> Any:
        """``GET /v1/fractal/tiles/{z}/{x}/{y}.png`` → :class:`FractalImage` (256×256)."""
        query = {"kind": kind, **{k: v for k, v in params.items() if v is not None}}
        return self._send(Call("GET", f"/v1/fractal/tiles/{z}/{x}/{y}.png", params=query,
                               parse=_image))
