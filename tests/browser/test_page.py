"""The page at / in a real browser against a real server: each view loads, takes input and shows
what the service answered (checked against independent oracles where it shows numbers), with
no request leaving the machine. Screenshots land in tests/browser/screenshots/ to look at."""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pyhf
import pytest

from labcrunch_service.app import create_app
from labcrunch_service.settings import Settings
from tests.helpers.browser import HOW_TO_GET_ONE, SCREENSHOTS, chromium_path
from tests.helpers.servers import serve_in_thread

# A real server and a real browser (skipped, saying how to get one, where there is none)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium_path() is None, reason=HOW_TO_GET_ONE)]

SLOW = 120_000  # ms: the first request of each kind compiles on a cold server


def wait_until(page, expression: str, timeout: float = SLOW) -> None:
    """Polls a JavaScript expression until it is true (the page's Content-Security-Policy forbids
    the string evaluation ``page.wait_for_function`` uses)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout / 1000:.0f} s: {expression}")
        page.wait_for_timeout(100)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def failures(page):
    """Answers of 400 and above the page got, as (status, url)."""
    seen: list[tuple[int, str]] = []
    page.on("response", lambda response: seen.append((response.status, response.url))
            if response.status >= 400 else None)
    return seen


def test_status_shows_version_devices_queue_and_links(live_server, page, failures, browser_context):
    import labcrunch_service

    page.goto(f"{live_server}/")
    page.wait_for_selector("#status .version")
    text = page.inner_text("#status")
    shot(page, "status")
    assert page.inner_text("#status .version") == labcrunch_service.__version__
    assert "cpu" in page.inner_text("#status .device")  # this machine's JAX device
    assert "running or queued" in text and "2 at once" in text  # the default queue
    assert "Workers" in text and "Your jobs" in text
    for link in ("/docs", "/redoc", "/openapi.json", "/metrics"):
        assert page.query_selector(f"#status a[href='{link}']")
    # /v1/jobs may not exist on this server: the view says so; nothing else failed.
    assert [url for status, url in failures if not url.endswith("/v1/jobs")] == []
    assert browser_context[1] == []


def test_fractal_explorer_zooms_picks_c_and_keeps_a_permalink(live_server, page, failures):
    page.goto(f"{live_server}/#fractal")
    page.wait_for_selector("#fractal .leaflet-tile-loaded", timeout=SLOW)
    assert "zoom 1" in page.inner_text("#fractal .fractal-readout")
    page.click("#fractal .leaflet-control-zoom-in")
    wait_until(page, "document.querySelector('#fractal .fractal-readout').textContent.includes('zoom 2')")
    page.wait_for_selector("#fractal[data-tiles=loaded] .leaflet-tile-container img[src^='blob:']",
                           timeout=SLOW)
    assert re.search(r"[?&]z=2\b", page.get_attribute("#fractal .permalink", "href"))
    # A click on the Mandelbrot set picks c there and shows the Julia set of that c.
    box = page.query_selector("#fractal .fractal-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 - 60)
    page.wait_for_selector("#fractal .julia-preview:not([hidden]) img[src^='blob:']", timeout=SLOW)
    c_re = float(page.input_value("#fractal [name=c_re]"))
    c_im = float(page.input_value("#fractal [name=c_im]"))
    center = page.inner_text("#fractal .fractal-readout")
    match = re.search(r"center (\S+) ([+−]) (\S+)i", center)
    re_center = float(match.group(1))
    assert abs(c_re - re_center) < 0.05 and c_im > 0  # above the center, on the real axis' side
    page.wait_for_timeout(300)
    shot(page, "fractal")
    assert [f for f in failures if "/tiles/" in f[1] or "julia" in f[1]] == []


def test_fractal_permalink_restores_a_deep_float64_view(live_server, page):
    view = "kind=mandelbrot&re=-0.743643887037151&im=0.13182590420533&z=12&colormap=magma&max_iter=400"
    page.goto(f"{live_server}/#fractal?{view}")
    wait_until(page, "document.querySelector('#fractal .fractal-readout').textContent.includes('zoom 12')")
    readout = page.inner_text("#fractal .fractal-readout")
    assert "float64" in readout and "-0.74364388703" in readout and "max_iter 400" in readout
    assert page.input_value("#fractal [name=colormap]") == "magma"
    page.wait_for_selector("#fractal[data-tiles=loaded]", timeout=SLOW)
    wait_until(page, "[...document.querySelectorAll('#fractal .leaflet-tile-loaded')]"
                     ".every(tile => tile.naturalWidth === 256)")
    page.wait_for_timeout(400)  # Leaflet fades tiles in
    shot(page, "fractal-deep")


def test_function_lab_plots_f_and_its_partials_and_points_at_errors(live_server, page):
    page.goto(f"{live_server}/#lab")
    page.wait_for_selector("#lab .lab-chart .u-legend", timeout=SLOW)
    legend = page.inner_text("#lab .lab-chart .u-legend")
    assert "f(x, y)" in legend and "∂f/∂x" in legend and "∂f/∂y" in legend
    assert "400 points, one request" in page.inner_text("#lab .lab-summary")
    shot(page, "lab")
    # An error of the language, on the second line: shown at its line and column.
    page.fill("#lab [name=expression]", "sin(x) * (\n  y +* 2)")
    page.click("#lab button[type=submit]")
    page.wait_for_selector("#lab .problem-box:not([hidden]) .problem-source")
    problem = page.inner_text("#lab .problem-box")
    assert "422" in problem and "line 2, column" in problem
    source = page.inner_text("#lab .problem-source").split("\n")
    assert source[0] == "  y +* 2)"
    assert source[1].index("^") == problem_column(problem) - 1
    shot(page, "lab-error")


def problem_column(text: str) -> int:
    return int(re.search(r"line 2, column (\d+)", text).group(1))


def sgd_oracle(start, rate, steps):
    """Plain gradient descent on (1 - x)**2 + 5*(y - x**2)**2, in numpy."""
    x, y = start
    for _ in range(steps):
        gx = -2 * (1 - x) - 20 * x * (y - x * x)
        gy = 10 * (y - x * x)
        x, y = x - rate * gx, y - rate * gy
    return x, y


def test_optimizer_paths_draws_each_run_with_its_start_and_end(live_server, page):
    page.goto(f"{live_server}/#paths")
    page.wait_for_selector("#paths .paths-table table", timeout=SLOW)  # the default run
    for name in ("momentum", "adam"):
        page.uncheck(f"#paths input[value={name}]")
    page.check("#paths input[value=rmsprop]")
    page.fill("#paths [name=rates]", "0.01, 0.03")
    page.fill("#paths [name=steps]", "100")
    page.click("#paths button[type=submit]")
    wait_until(page, "document.querySelectorAll('#paths .paths-table tbody tr').length == 4 && "
                           "document.querySelector('#paths .paths-table td').textContent.includes('sgd')",
                           timeout=SLOW)
    rows = [row.inner_text().split("\t") for row in page.query_selector_all("#paths .paths-table tbody tr")]
    assert [(r[0].strip(), r[1]) for r in rows] == [("sgd", "0.01"), ("sgd", "0.03"),
                                                    ("rmsprop", "0.01"), ("rmsprop", "0.03")]
    for row in rows[:2]:
        expected = sgd_oracle((-1.2, 1.0), float(row[1]), 100)
        shown = [float(v) for v in row[4].strip("()").split(",")]
        assert np.allclose(shown, expected, rtol=1e-4, atol=1e-5), (row, expected)
    assert len(page.query_selector_all("#paths .plane-path")) == 4
    assert len(page.query_selector_all("#paths .plane-marker-circle")) == 4  # starts
    assert len(page.query_selector_all("#paths .plane-marker-square")) == 4  # ends
    assert len(page.query_selector_all("#paths .plane-contour")) > 5
    legend = page.inner_text("#paths .legend")
    assert "sgd lr 0.01" in legend and "start" in legend and "end" in legend
    shot(page, "paths")
    # Stepping back shows the paths up to that history entry.
    page.fill("#paths .paths-step", "10")
    page.dispatch_event("#paths .paths-step", "input")
    assert "history entry 10 of 100" in page.inner_text("#paths .paths-step-label")


def test_likelihood_fits_an_uploaded_workspace_and_draws_scan_and_cls(live_server, page, tmp_path):
    page.goto(f"{live_server}/#likelihood")
    page.wait_for_selector("#likelihood:not(.busy) .cls-card .observed-limit", timeout=SLOW)  # the example
    workspace = json.loads(page.input_value("#likelihood [name=workspace]"))
    upload = tmp_path / "request.json"
    upload.write_text(json.dumps({"model": {"workspace": workspace}, "data": "observed"}))
    page.fill("#likelihood [name=workspace]", "")
    page.set_input_files("#likelihood [name=file]", str(upload))
    wait_until(page, "document.querySelector('#likelihood [name=workspace]').value.length > 0")
    page.click("#likelihood button[type=submit]")
    page.wait_for_selector("#likelihood .cls-card .observed-limit", timeout=SLOW)
    page.wait_for_selector("#likelihood .scan-card .plane-ellipse", timeout=SLOW)

    # Best fit against pyhf itself (scipy)
    ws = pyhf.Workspace(workspace)
    model = ws.model()
    bestfit = np.asarray(pyhf.infer.mle.fit(ws.data(model), model), dtype=float)
    table = {row.query_selector("td code").inner_text(): row.query_selector_all("td")[1].inner_text()
             for row in page.query_selector_all("#likelihood .fit-table tbody tr")}
    assert set(table) == set(model.config.par_names)
    for name, value in zip(model.config.par_names, bestfit, strict=True):
        assert math.isclose(float(table[name]), value, rel_tol=2e-3, abs_tol=2e-3), name
    # The correlation matrix: one cell per pair of free parameters, 1 on the diagonal
    cells = page.query_selector_all("#likelihood table.correlation tbody td")
    n = len(model.config.par_names)
    assert len(cells) == n * n
    assert [cells[i * n + i].inner_text() for i in range(n)] == ["1.00"] * n
    # The scan: heatmap, 1σ and 2σ ellipses labelled, and the ellipses inside the scanned range
    legend = page.inner_text("#likelihood .scan-card .legend")
    assert "1σ ellipse (68.27 %" in legend and "2σ ellipse (95.45 %" in legend
    assert page.query_selector("#likelihood .scan-card image.plane-heatmap")
    frame = page.query_selector("#likelihood .scan-card .plane-frame").bounding_box()
    for ellipse in page.query_selector_all("#likelihood .scan-card .plane-ellipse"):
        drawn = ellipse.bounding_box()
        assert frame["x"] <= drawn["x"] and drawn["x"] + drawn["width"] <= frame["x"] + frame["width"]
        assert frame["y"] <= drawn["y"] and drawn["y"] + drawn["height"] <= frame["y"] + frame["height"]
    # CLs: the observed limit, the expected band in the legend
    assert 0 < float(page.inner_text("#likelihood .observed-limit")) < 10
    assert "expected +1σ" in page.inner_text("#likelihood .cls-card .u-legend")
    shot(page, "likelihood")


def test_the_page_works_with_an_api_key_it_never_puts_in_a_url(page, browser_context):
    key = "s3cret-key-for-the-page"
    app = create_app(Settings(warmup=False, load_tensorflow=False, log_json=False,
                              api_keys={"alice": key}))
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    with serve_in_thread(app) as url:
        page.goto(f"{url}/")
        page.evaluate("localStorage.clear()")
        page.reload()
        page.wait_for_selector("#status .problem-box:not([hidden])")
        assert "401" in page.inner_text("#status .problem-box")
        assert "API key" in page.inner_text("#status .problem-hint")
        shot(page, "status-needs-key")
        page.fill("#api-key", key)
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("#status .version")
        assert page.evaluate("localStorage.getItem('labcrunch.apiKey')") == key
        page.reload()  # the key is remembered by this browser
        page.wait_for_selector("#status .version")
        assert page.input_value("#api-key") == key
        page.goto(f"{url}/#fractal")  # tiles carry the key in a header
        page.wait_for_selector("#fractal .leaflet-tile-loaded", timeout=SLOW)
        page.evaluate("localStorage.clear()")
    assert urls and not any(key in u for u in urls)
    assert browser_context[1] == []
