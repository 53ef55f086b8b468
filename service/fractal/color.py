"""From escape counts to pixels: smooth counts, colormaps, the seed's shading, PNG.

Colormaps are small tables of 33 colors sampled from matplotlib's perceptually uniform maps
(matplotlib is not a server dependency), interpolated linearly to 256 entries. The color of
an escaped pixel is ``log(1 + v) / log(1 + max_iter)`` through the map, where v is the count
or, with ``smooth``, the continuous count v = n + 1 − log₂(ln|z_n| / ln R); the division by
ln R is the usual variant for escape radii R above 2, and keeps v in about [n, n + 1). Pixels
that never escaped are black. The same pixel always gets the same color, so map tiles join
without seams.

``seed`` reproduces the seed notebook's shading instead: counts divided by their maximum,
log10, stretched linearly over the image's range onto viridis, with the set itself counted
as ``max_iter`` (so it is the brightest color, as in the notebook).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from labcrunch_service.fractal.escape import Escape

# 33 colors each, evenly spaced from 0 to 1, as rrggbb hex.
_CONTROL_POINTS = {
    "viridis": (
        "440154470d6048186a482374472d7b4537814240863e49893b528b375b8d33638d2f6b8e2c728e297a8e"
        "26828e23898e21918c1f988b1fa08822a78528ae8032b67a3fbc734ec36b5ec96270cf5784d44b98d83e"
        "addc30c2df23d8e219ece51bfde725"
    ),
    "magma": (
        "0000040303120a0822130d341d114729115a36106b440f7651127c5d177f6a1c81762181832681902a81"
        "9c2e7faa337db73779c43c75d0416fdc4869e75263ef5d5ef56b5cf9795dfc8961fd9869fea772feb67c"
        "fec488fed395fde2a3fcf0b2fcfdbf"
    ),
    "inferno": (
        "0000040403120b0724150b37210c4a2f0a5b3d09654a0c6b57106e64156e71196e7d1e6d8a226a972766"
        "a32c61b0315bbc3754c73e4cd24644db503be45a31eb6628f1731df68013f98e09fb9d07fcac11fbbc21"
        "f9cb35f5db4cf2ea69f3f68afcffa4"
    ),
    "plasma": (
        "0d08872206903105973f049c4c02a15901a56600a77201a87e03a88a09a59511a1a01a9caa2395b32c8e"
        "bc3587c43e7fcc4778d35171da5a6ae06363e66c5ceb7655f0804ef58b47f89540fba139fdac33feb82c"
        "fdc527fcd225f8df25f4ed27f0f921"
    ),
    "cividis": (
        "00224e00285b002e6a0533711a386f273e6e32436d3b496c434e6c4b546c535a6d5a5f6e61656f686a71"
        "6f70737676767d7c788482798c8878938e789b9476a39a74aba072b4a76fbcae6cc4b468cdbb63d5c25e"
        "dec958e7d150f0d846f9e03afee838"
    ),
}
COLORMAPS = (*_CONTROL_POINTS, "gray", "seed")
DEFAULT_COLORMAP = "viridis"
PNG_COMPRESS_LEVEL = 1  # zlib level: 1 is several times faster than 6 for a few % more bytes


def lookup_table(name: str) -> np.ndarray:
    """The 256 × 3 uint8 table of a colormap (``seed`` uses viridis)."""
    if name == "gray":
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    hexes = "".join(_CONTROL_POINTS["viridis" if name == "seed" else name])
    points = np.frombuffer(bytes.fromhex(hexes), np.uint8).reshape(-1, 3).astype(np.float64)
    where = np.linspace(0.0, 1.0, points.shape[0])
    t = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(t, where, points[:, k]) for k in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


def escaped(result: Escape) -> np.ndarray:
    """Pixels that escaped (the others are in the set, to max_iter)."""
    return result.modulus_sq > np.float64(result.escape_radius) ** 2


def _smooth(counts: np.ndarray, modulus_sq: np.ndarray, escape_radius: float,
            dtype=np.float64) -> np.ndarray:
    """v = n + 1 − log₂(ln|z_n| / ln R) for escaped pixels' counts and |z_n|²."""
    half_log_r = dtype(0.5 / np.log(escape_radius))
    return counts + dtype(1.0) - np.log2(np.log(modulus_sq.astype(dtype)) * half_log_r)


def smooth_counts(result: Escape) -> np.ndarray:
    """Smooth counts where the pixel escaped, else max_iter (float64)."""
    out = result.counts.astype(np.float64)
    done = escaped(result)
    out[done] = _smooth(result.counts[done], result.modulus_sq[done], result.escape_radius)
    return out


def colorize(result: Escape, colormap: str = DEFAULT_COLORMAP, smooth: bool = True) -> np.ndarray:
    """An RGB image, (height, width, 3) uint8."""
    table = lookup_table(colormap)
    if colormap == "seed":
        shade = np.log10(result.counts / result.counts.max())
        low, high = shade.min(), shade.max()
        t = (shade - low) / (high - low) if high > low else np.ones_like(shade)
        return np.take(table, np.round(t * 255).astype(np.intp), axis=0)
    # Only escaped pixels are colored through the map; entry 256 is black, for the set.
    table = np.vstack([table, np.zeros((1, 3), np.uint8)])
    done = escaped(result)
    counts = result.counts[done]
    # float32 is ample for choosing one of 256 colors, and twice as fast
    values = (_smooth(counts, result.modulus_sq[done], result.escape_radius, np.float32)
              if smooth else counts.astype(np.float32))
    t = np.log1p(np.maximum(values, np.float32(0))) * np.float32(255 / np.log1p(result.max_iter))
    index = np.full(result.counts.shape, 256, np.intp)
    index[done] = np.clip(np.round(t), 0, 255).astype(np.intp)
    return np.take(table, index, axis=0)  # several times faster than table[index]


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()
