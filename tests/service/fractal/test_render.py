"""/v1/fractal: counts against a plain-Python reference of the definition, images, limits, errors.

The reference iterates the definition in Python complex numbers from the pixel centers as
documented (computed here independently, then rounded to the working precision) and carries a
bound on how far an orbit computed with that precision's rounding can drift. Where the orbit
passes within that bound of the escape radius the count is not determined by the definition
alone, so those pixels are reported and left out; every other pixel must match exactly.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from labcrunch_service.fractal import plane
from labcrunch_service.settings import Limits
from tests.conftest import assert_problem
from tests.helpers.fractal_reference import (
    LATTICE,
    column_centers,
    reference_count,
    rounded,
    row_centers,
)

SEED_C = complex(-0.7269, 0.1889)


def post(api, **body):
    return api.post("/v1/fractal", json=body)


def npy_counts(api, **body) -> np.ndarray:
    response = post(api, format="npy", **body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    assert float(response.headers["x-elapsed-ms"]) >= 0 and response.headers["x-device"]
    return np.load(io.BytesIO(response.content), allow_pickle=False)


# --- counts -------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_mandelbrot_on_the_integer_lattice_including_orbits_landing_on_the_radius(api, precision):
    """Centers at a + bi, a, b in -2..2: exact arithmetic, and |z_n| = 2 exactly is not > 2."""
    counts = npy_counts(api, kind="mandelbrot", max_iter=50, precision=precision, **LATTICE)
    assert counts.shape == (5, 5) and counts.dtype == np.int32
    expected = [[reference_count("mandelbrot", a, b, 0, 50, 2.0, precision)[0]
                 for a in range(-2, 3)] for b in range(2, -3, -1)]  # row 0 is the top, b = 2
    np.testing.assert_array_equal(counts, expected)
    at = {(a, b): counts[2 - b, a + 2] for a in range(-2, 3) for b in range(-2, 3)}
    assert at[(2, 0)] == 2  # z1 = 2 (not > 2), z2 = 6
    assert at[(0, 2)] == 2  # z1 = 2i, z2 = -4 + 2i
    assert at[(1, 0)] == 3  # 1, 2, 5
    assert at[(-2, 0)] == 50  # 0, -2, 2, 2, ...: |z| = 2 forever, never > 2
    assert at[(0, 1)] == 50 and at[(-1, 0)] == 50 and at[(0, 0)] == 50  # cycles and 0
    assert at[(-1, 1)] == 3  # -1+i, -1-i, -1+3i


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_julia_on_the_integer_lattice(api, precision):
    counts = npy_counts(api, kind="julia", c_re=-2.0, c_im=0.0, max_iter=40, precision=precision,
                        **LATTICE)
    expected = [[reference_count("julia", a, b, -2 + 0j, 40, 2.0, precision)[0]
                 for a in range(-2, 3)] for b in range(2, -3, -1)]
    np.testing.assert_array_equal(counts, expected)
    assert counts[2, 4] == 40  # z0 = 2: 2, 2, 2, ... (|z| = R exactly)
    assert counts[1, 2] == 1  # z0 = i: -3
    assert counts[2, 3] == 40  # z0 = 1: -1, -1, ...


@pytest.mark.parametrize(
    ("precision", "offset"), [("float32", 2.0**-20), ("float64", 2.0**-48)]
)
def test_escape_decided_by_the_last_bit(api, precision, offset):
    """c just above 2 escapes at n = 1, just below at n = 2, in the precision asked for."""
    for value, expected in ((2.0 + offset, 1), (2.0 - offset, 2), (2.0, 2)):
        box = {"x_min": value - 0.5, "x_max": value + 0.5, "y_min": -0.5, "y_max": 0.5}
        counts = npy_counts(api, kind="mandelbrot", width=1, height=1, max_iter=10,
                            precision=precision, **box)
        assert counts.tolist() == [[expected]], (value, precision)


def test_coordinates_are_rounded_to_the_working_precision(api):
    """2 + 2⁻⁴⁸ is above 2 in float64 but is 2 in float32: different counts, both right."""
    value = 2.0 + 2.0**-48
    box = {"x_min": value - 0.5, "x_max": value + 0.5, "y_min": -0.5, "y_max": 0.5}
    one = {"kind": "mandelbrot", "width": 1, "height": 1, "max_iter": 10, **box}
    assert npy_counts(api, precision="float64", **one).item() == 1
    assert npy_counts(api, precision="float32", **one).item() == 2


GRID = {"width": 40, "height": 30, "max_iter": 250}
SEED_BOX = (-1.5, 1.5, -1.5, 1.5)
SHIFTED_BOX = (-1.6, 1.3, -1.2, 1.5)  # not symmetric: nothing is mirrored


@pytest.mark.parametrize(
    ("kind", "precision", "box"),
    [("mandelbrot", "float32", SEED_BOX), ("mandelbrot", "float64", SEED_BOX),
     ("julia", "float32", SEED_BOX), ("julia", "float64", SEED_BOX),
     ("mandelbrot", "float32", SHIFTED_BOX), ("julia", "float32", SHIFTED_BOX)],
)
def test_counts_match_the_reference_on_a_grid(api, kind, precision, box):
    view = dict(zip(("x_min", "x_max", "y_min", "y_max"), box, strict=True))
    counts = npy_counts(api, kind=kind, precision=precision, **view, **GRID)
    xs = [rounded(v, precision) for v in column_centers(GRID["width"], *box[:2])]
    ys = [rounded(v, precision) for v in row_centers(GRID["height"], *box[2:])]
    c = complex(rounded(SEED_C.real, precision), rounded(SEED_C.imag, precision))
    determined = 0
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            expected, sure = reference_count(kind, x, y, c, GRID["max_iter"], 2.0, precision)
            if sure:
                determined += 1
                assert counts[i, j] == expected, (kind, precision, i, j, x, y)
    total = counts.size
    # The test has teeth: most pixels are determined, both escaping and never-escaping ones.
    assert determined >= (0.97 if precision == "float64" else 0.85) * total, determined
    assert (counts == GRID["max_iter"]).sum() > 0 and (counts < 5).sum() > 0


def test_mirror_shortcut_only_for_exactly_symmetric_views():
    from labcrunch_service.fractal.escape import mirrored

    xs, ys = plane.Plane(-1.5, 1.5, -1.5, 1.5, 40, 30).pixel_centers(np.float32)
    assert mirrored("mandelbrot", xs, ys) and mirrored("julia", xs, ys)
    xs, ys = plane.Plane(-2.0, 1.0, -1.5, 1.5, 40, 30).pixel_centers(np.float32)
    assert mirrored("mandelbrot", xs, ys) and not mirrored("julia", xs, ys)
    xs, ys = plane.Plane(-1.5, 1.5, -1.2, 1.5, 40, 30).pixel_centers(np.float32)
    assert not mirrored("mandelbrot", xs, ys) and not mirrored("julia", xs, ys)


def plain_loop_counts(kind, xs, ys, c, max_iter, dtype) -> np.ndarray:
    """Every pixel iterated max_iter steps, tested at every step: no cardioid or bulb test, no
    cycle detection, no mirroring, no blocks. The same expressions as the service's kernel,
    compiled by XLA too, so both round alike and the counts must agree bit for bit."""
    import jax
    import jax.numpy as jnp

    grid_x, grid_y = (a.astype(dtype) for a in np.meshgrid(xs, ys))
    if kind == "julia":
        z, cs = (grid_x, grid_y), (np.full_like(grid_x, c.real), np.full_like(grid_x, c.imag))
    else:
        z, cs = (np.zeros_like(grid_x), np.zeros_like(grid_x)), (grid_x, grid_y)

    def step(n, state):
        a, b, count = state
        a, b = a * a - b * b + cs[0], (a + a) * b + cs[1]
        first = (count == max_iter) & ~(a * a + b * b <= dtype(4.0))
        return a, b, jnp.where(first, n + 1, count)

    start = (*z, jnp.full(grid_x.shape, max_iter, jnp.int32))
    return np.asarray(jax.jit(lambda s: jax.lax.fori_loop(0, max_iter, step, s))(start)[2])


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize(
    ("kind", "box", "c"),
    [
        ("mandelbrot", (0.2, 0.3, -0.05, 0.05), 0j),  # the cusp: mirrored, cardioid edge
        ("mandelbrot", (-0.85, -0.65, -0.1, 0.1), 0j),  # where cardioid and bulb meet
        ("mandelbrot", (-1.3, -1.2, -0.04, 0.06), 0j),  # the bulb's far edge, not mirrored
        ("mandelbrot", (-0.2, -0.05, 0.65, 0.8), 0j),  # the period-3 bulb: exact cycles
        ("julia", (-1.6, 1.6, -1.2, 1.2), complex(-1.0, 0.0)),  # basilica: half turn, cycles
        ("julia", SEED_BOX, complex(-0.12, 0.75)),  # the rabbit: a period-3 cycle
    ],
)
def test_shortcuts_never_change_a_count(api, kind, box, c, precision):
    """Cardioid/bulb test, exact-cycle detection and mirroring against a plain loop."""
    view = dict(zip(("x_min", "x_max", "y_min", "y_max"), box, strict=True))
    size, max_iter = {"width": 48, "height": 36}, 1500
    extra = {"c_re": c.real, "c_im": c.imag} if kind == "julia" else {}
    counts = npy_counts(api, kind=kind, precision=precision, max_iter=max_iter, **view, **size,
                        **extra)
    dtype = np.float32 if precision == "float32" else np.float64
    xs = np.array(column_centers(size["width"], *box[:2]))
    ys = np.array(row_centers(size["height"], *box[2:]))
    expected = plain_loop_counts(kind, xs, ys, c, max_iter, dtype)
    np.testing.assert_array_equal(counts, expected)
    assert (expected == max_iter).sum() > 50 and (expected < max_iter).sum() > 50


def test_cardioid_points_are_in_the_set_even_where_a_float32_loop_drifts_out(api):
    """c (a float32 number) lies exactly inside the main cardioid, a hair from the cusp: it
    never escapes. A plain float32 loop escapes after ~10^4 steps by rounding; the cardioid
    test is exact arithmetic's answer, which is the definition's."""
    from fractions import Fraction

    x, y = float(np.float32(0.25001505)), float(np.float32(1.16844674e-07))
    a, b = Fraction(x) - Fraction(1, 4), Fraction(y)
    q = a * a + b * b
    assert q * (q + a) <= b * b / 4  # inside, in exact rational arithmetic
    h = 2.0**-10  # a one-pixel box whose center is exactly (x, y)
    box = {"x_min": x - h, "x_max": x + h, "y_min": y - h, "y_max": y + h}
    assert npy_counts(api, kind="mandelbrot", width=1, height=1, max_iter=30_000,
                      **box).item() == 30_000


def test_pixels_near_the_escape_boundary(api):
    """|z_1| a hair either side of R (a margin far above float32 rounding) in a Julia set."""
    # z0 on the real axis with c = 0: z1 = z0², escaping iff z0 > √2 (R = 2).
    for z0, expected in ((math.sqrt(2) * (1 + 1e-5), 1), (math.sqrt(2) * (1 - 1e-5), 2)):
        box = {"x_min": z0 - 1e-3, "x_max": z0 + 1e-3, "y_min": -1e-3, "y_max": 1e-3}
        got = npy_counts(api, kind="julia", c_re=0.0, c_im=0.0, width=1, height=1, max_iter=3,
                         **box).item()
        # 1 - 1e-5 below: z1 ≈ 2 - 4e-5, z2 ≈ 4 > 2
        assert got == expected, z0


def test_escape_radius_changes_counts_as_defined(api):
    """R = 10 for c = 2: |z_n| = 2, 6, 38 → the first above 10 is n = 3."""
    box = {"x_min": 1.5, "x_max": 2.5, "y_min": -0.5, "y_max": 0.5}
    got = npy_counts(api, kind="mandelbrot", width=1, height=1, max_iter=10, escape_radius=10,
                     **box)
    assert got.item() == 3


def test_json_answer_with_smooth_counts_in_closed_form(api):
    response = post(api, kind="mandelbrot", max_iter=50, format="json", **LATTICE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["device"] and body["elapsed_ms"] >= 0
    assert body["box"] == {"x_min": -2.5, "x_max": 2.5, "y_min": -2.5, "y_max": 2.5}
    smooth, counts = np.array(body["smooth"]), np.array(body["counts"])
    # c = 2: z2 = 6; c = 1: z3 = 5 → v = n + 1 − log2(ln|z_n| / ln 2)
    assert smooth[2, 4] == pytest.approx(3 - math.log2(math.log(6) / math.log(2)), rel=1e-6)
    assert smooth[2, 3] == pytest.approx(4 - math.log2(math.log(5) / math.log(2)), rel=1e-6)
    assert counts[2, 0] == 50 and smooth[2, 0] == 50  # in the set: max_iter


# --- images -------------------------------------------------------------------------------


def png_image(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-device"] and float(response.headers["x-elapsed-ms"]) >= 0
    return Image.open(io.BytesIO(response.content))


def test_png_decodes_to_the_requested_size_with_the_set_black(api):
    image = png_image(api.get("/v1/fractal/mandelbrot.png?width=37&height=23&max_iter=100"))
    assert image.size == (37, 23) and image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels[11, 18].tolist() == [0, 0, 0]  # the center pixel is c = 0: in the set
    assert pixels[0, 0].tolist() != [0, 0, 0]  # c ≈ -1.46 + 1.43i escapes at once


def test_center_and_scale_give_the_same_picture_as_the_box(api):
    by_box = api.get("/v1/fractal/julia.png?width=30&height=20&max_iter=60"
                     "&x_min=-1&x_max=2&y_min=-0.5&y_max=1.5")
    by_center = api.get("/v1/fractal/julia.png?width=30&height=20&max_iter=60"
                        "&center_x=0.5&center_y=0.5&scale=3")
    np.testing.assert_array_equal(np.asarray(png_image(by_box)), np.asarray(png_image(by_center)))


@pytest.mark.parametrize("kind", ["mandelbrot", "julia"])
def test_the_seed_pictures_render(api, kind):
    """The seed's 500×500, 1,000-step pictures with its log-normalized shading."""
    image = png_image(api.get(f"/v1/fractal/{kind}.png?width=500&height=500&max_iter=1000"
                              "&colormap=seed"))
    assert image.size == (500, 500)
    colors = np.unique(np.asarray(image).reshape(-1, 3), axis=0)
    assert len(colors) > 50  # a picture, not a flat field


@pytest.mark.parametrize("colormap", ["viridis", "magma", "inferno", "plasma", "cividis", "gray"])
def test_every_colormap_renders(api, colormap):
    image = png_image(api.get(f"/v1/fractal/mandelbrot.png?width=16&height=16&max_iter=50"
                              f"&colormap={colormap}&smooth=false"))
    assert image.size == (16, 16)


@pytest.mark.parametrize(
    ("smooth", "v"), [("true", 3 - math.log2(math.log(6) / math.log(2))), ("false", 2.0)]
)
def test_pixel_color_is_log_of_the_count_through_the_colormap(api, smooth, v):
    """c = 2 escapes at n = 2 with z_2 = 6: color = magma(log(1 + v) / log(1 + max_iter))."""
    import matplotlib

    image = png_image(api.get("/v1/fractal/mandelbrot.png?width=5&height=5&x_min=-2.5&x_max=2.5"
                              f"&y_min=-2.5&y_max=2.5&max_iter=50&colormap=magma&smooth={smooth}"))
    expected = np.array(matplotlib.colormaps["magma"](math.log1p(v) / math.log1p(50))[:3]) * 255
    assert np.abs(np.asarray(image)[2, 4] - expected).max() <= 6
    assert np.asarray(image)[2, 0].tolist() == [0, 0, 0]  # c = -2 never escapes: black


def test_colormap_tables_follow_matplotlib():
    """The 33-point tables, interpolated, stay within a few levels of matplotlib's maps."""
    import matplotlib

    from labcrunch_service.fractal.color import lookup_table

    for name in ("viridis", "magma", "inferno", "plasma", "cividis"):
        ours = lookup_table(name).astype(float)
        theirs = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255
        assert np.abs(ours - theirs).max() <= 6, name
    assert lookup_table("gray")[128].tolist() == [128, 128, 128]


# --- tiles --------------------------------------------------------------------------------


def test_tile_geometry_is_the_xyz_scheme():
    limits = Limits()
    world = plane.tile_plane(0, 0, 0, limits)
    assert world.box() == {"x_min": -2.5, "x_max": 1.5, "y_min": -2.0, "y_max": 2.0}
    top_left = plane.tile_plane(1, 0, 0, limits)
    assert top_left.box() == {"x_min": -2.5, "x_max": -0.5, "y_min": 0.0, "y_max": 2.0}
    bottom_right = plane.tile_plane(2, 3, 3, limits)
    assert bottom_right.box() == {"x_min": 0.5, "x_max": 1.5, "y_min": -2.0, "y_max": -1.0}
    assert plane.tile_max_iter(0) < plane.tile_max_iter(5) < plane.tile_max_iter(20)
    assert plane.tile_precision(0) == "float32" and plane.tile_precision(30) == "float64"


def test_tile_png(api):
    response = api.get("/v1/fractal/tiles/1/1/0.png?colormap=magma")
    assert png_image(response).size == (256, 256)
    assert "max-age" in response.headers["cache-control"]


def test_deep_tile_uses_float64_and_renders(api):
    z = 24  # pixels of 2.4e-10: below float32's resolution near the set
    n = 1 << z
    x, y = n * 9 // 16, n // 2  # the tile at c = -0.25 + 0i: inside the cardioid
    assert png_image(api.get(f"/v1/fractal/tiles/{z}/{x}/{y}.png?max_iter=50")).size == (256, 256)


def test_tiles_outside_the_world_are_not_found(api):
    body = assert_problem(api.get("/v1/fractal/tiles/2/4/0.png"), 404)
    assert "0..3" in body["detail"]
    assert_problem(api.get("/v1/fractal/tiles/0/0/-1.png"), 404)


# --- limits and bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "limit"),
    [
        ("width=5000&height=5000", "max_pixels"),
        ("max_iter=100001", "max_iter"),
        ("width=4096&height=4096&max_iter=2000", "max_pixel_iterations"),
        ("width=16777216&height=1&max_iter=1", "max_aspect_ratio"),  # coloring costs, not counted
        ("width=1&height=16777216&max_iter=1", "max_aspect_ratio"),  # in iterations, ~9 s before
    ],
)
def test_each_limit_refuses_before_any_work(api, query, limit):
    body = assert_problem(api.get(f"/v1/fractal/mandelbrot.png?{query}"), 413)
    assert body["limit"] == limit and body["value"] > body["maximum"]
    assert limit in body["detail"]


def test_coloring_and_encoding_count_in_the_work():
    """max_pixel_iterations charges every pixel PIXEL_COST_ITERATIONS for its coloring and PNG
    encoding: a picture at max_iter = 1 is not free (the iterations alone said 10^6 here)."""
    from labcrunch_service.errors import LimitExceeded
    from labcrunch_service.fractal.plane import PIXEL_COST_ITERATIONS, check_limits

    limits = Limits(max_pixel_iterations=1_000_000)
    with pytest.raises(LimitExceeded) as refused:
        check_limits(1000, 1000, 1, limits)
    assert refused.value.extra["value"] == 1000 * 1000 * (1 + PIXEL_COST_ITERATIONS)
    check_limits(90, 100, 1, limits)  # 9,000 pixels x 101 = 909,000
    with pytest.raises(LimitExceeded) as refused:
        check_limits(4097, 1, 1, Limits())
    assert refused.value.extra["limit"] == "max_aspect_ratio"


def test_json_and_zoom_limits(api):
    body = assert_problem(post(api, width=2048, height=1024, max_iter=1, format="json"), 413)
    assert body["limit"] == "max_json_pixels"
    body = assert_problem(api.get("/v1/fractal/tiles/99/0/0.png"), 413)
    assert body["limit"] == "max_tile_zoom"


def test_info_lists_the_fractal_limits(api):
    limits = api.get("/v1/info").json()["limits"]
    for name in ("max_pixels", "max_iter", "max_pixel_iterations", "max_json_pixels",
                 "max_tile_zoom", "max_aspect_ratio"):
        assert name in limits


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/v1/fractal/burningship.png", "kind"),
        ("/v1/fractal/mandelbrot.png?x_min=1&x_max=0&y_min=0&y_max=1", "x_max"),
        ("/v1/fractal/mandelbrot.png?x_min=0&x_max=1&y_min=1&y_max=1", "y_max"),
        ("/v1/fractal/mandelbrot.png?width=0", "width"),
        ("/v1/fractal/mandelbrot.png?height=0", "height"),
        ("/v1/fractal/mandelbrot.png?x_min=nan&x_max=1&y_min=0&y_max=1", "x_min"),
        ("/v1/fractal/julia.png?c_re=inf", "c_re"),
        ("/v1/fractal/mandelbrot.png?colormap=jet", "colormap"),
        ("/v1/fractal/mandelbrot.png?x_min=0&x_max=1", "y_min"),
        ("/v1/fractal/mandelbrot.png?x_min=0&x_max=1&y_min=0&y_max=1&scale=2", "scale"),
        ("/v1/fractal/mandelbrot.png?center_x=0.3", "scale"),
        ("/v1/fractal/mandelbrot.png?scale=0", "scale"),
        # a center form past the box bound: float32 |z_1|² overflowed, smooth was -Infinity
        ("/v1/fractal/julia.png?center_x=0&center_y=0&scale=1e9&width=1&height=30000", "y_min"),
        ("/v1/fractal/mandelbrot.png?center_x=1e9&center_y=0&scale=2&precision=float64", "x_max"),
        ("/v1/fractal/mandelbrot.png?escape_radius=1.5", "escape_radius"),
        ("/v1/fractal/mandelbrot.png?c_re=0.3", "c_re"),
        ("/v1/fractal/julia.png?c_re=-2.5", "escape_radius"),
        ("/v1/fractal/mandelbrot.png?max_iter=0", "max_iter"),
        ("/v1/fractal/mandelbrot.png?zoom=3", "zoom"),
        ("/v1/fractal/mandelbrot.png?width=100&x_min=1&x_max=1.000000001&y_min=0&y_max=1",
         "x_max"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(api, path, where):
    body = assert_problem(api.get(path), 422)
    locations = [str(part) for error in body.get("errors") or [] for part in error["loc"]]
    assert where in locations or where in body["detail"], body


def test_bad_post_bodies(api):
    assert_problem(post(api, kind="newton"), 422)
    assert_problem(post(api, format="tiff"), 422)
    assert_problem(post(api, precision="float16"), 422)
    # the same too-fine view is fine in float64
    fine = {"width": 100, "height": 1, "x_min": 1.0, "x_max": 1.000000001, "y_min": 0.0,
            "y_max": 1.0, "max_iter": 5}
    assert_problem(post(api, format="npy", **fine), 422)
    assert npy_counts(api, precision="float64", **fine).shape == (1, 100)


def test_start_up_warm_up_compiles_and_renders():
    """warmup() runs at start-up, where a failure would only be logged: it must work."""
    from labcrunch_service.fractal.render import warmup
    from labcrunch_service.settings import Settings

    warmup(Settings(warmup=False, log_json=False))
