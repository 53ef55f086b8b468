"""Hostile input against a served app (a real server process): every case gets the status it must
get, answers within 5 s, and raises the server's memory by at most ``MEMORY_BUDGET``; an exception
leaves the keep-alive connection healthy; /livez stays fast while a large body arrives.

The cases are the findings of the hardening pass (named ``finding``) and the kinds of input it
tried: the language, JSON, .npy/.npz, query strings and headers. A case whose fix is another
helper's work names it in ``by`` and is an expected failure until that fix lands.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.helpers.apps import SERVED_KEY
from tests.helpers.servers import serving_process

pytestmark = pytest.mark.slow  # starts a server process

#: What one request may add to the serving process's peak memory (README, "Errors"): bodies are
#: at most 64 MiB (.npz/.npy) or 4 MiB (JSON: up to ~10 bytes of Python objects per byte).
MEMORY_BUDGET = 256 * 2**20
#: The slowest answer to an invalid request.
SLOWEST_SECONDS = 5.0
KEY = {"X-API-Key": SERVED_KEY}
NPZ = {"Content-Type": "application/x-npz"}
NPY = {"Content-Type": "application/x-npy"}
# Settings of the served app: small enough that the .npz bomb below stays ~1 GB inflated.
SERVER_ENV = {"LABCRUNCH_LIMITS__MAX_VARIABLES": "64", "LABCRUNCH_LOAD_TENSORFLOW": "false",
              "LABCRUNCH_LOG_LEVEL": "WARNING"}


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=True)
    return buffer.getvalue()


def npz_of(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    """An .npz built member by member (so that names may repeat)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": meant
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def npz_bomb(members: int, points: int) -> bytes:
    """``members`` deflated members of ``points`` zeros each (~250× smaller than inflated), written
    by hand so that the one member is compressed once."""
    data = npy(np.zeros(points))
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate, as in a zip
    packed = deflate.compress(data) + deflate.flush()
    crc = zlib.crc32(data)
    local, central = io.BytesIO(), io.BytesIO()
    for i in range(members):
        name = f"x{i}.npy".encode()
        offset = local.tell()
        local.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(packed),
                                len(data), len(name), 0) + name + packed)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc,
                                  len(packed), len(data), len(name), 0, 0, 0, 0, 0, offset) + name)
    directory = central.getvalue()
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, members, members, len(directory),
                      local.tell(), 0)
    return local.getvalue() + directory + end


def npy_declaring(shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    """An .npy header that declares ``shape`` of float64, followed by ``payload`` only."""
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + payload


@dataclass
class Hostile:
    name: str
    finding: str  # the hardening finding, or the kind of input
    method: str
    path: str
    status: int | tuple[int, ...]
    request: dict[str, Any] | Callable[[], dict[str, Any]] = field(default_factory=dict)  # httpx
    # keyword arguments, or a function that makes them (large bodies are made when needed)
    detail: str | None = None  # text the problem's detail (or limit) must contain
    by: str | None = None  # the helper whose fix this case waits for


GRADIENT = "/v1/gradient"
MINIMIZE = "/v1/minimize"
SIMPLE_MODEL = {"simple": {"kind": "uncorrelated_background", "signal": [5.0], "bkg": [50.0],
                           "bkg_uncertainty": [5.0]}}


def gradient(expression: str, at: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"json": {"expression": expression, "at": at, **extra}}


CASES = [
    # --- the language (gradient, minimize) -----------------------------------------------
    Hostile("hex literal of 5,000 digits", "3", "POST", GRADIENT, (413, 422),
            gradient("0x" + "f" * 5000, {"x": 1}), by="language"),
    Hostile("binary literal of 20,000 digits", "3", "POST", GRADIENT, (413, 422),
            gradient("0b" + "1" * 20000, {"x": 1})),
    Hostile("decimal literal of 5,000 digits", "3", "POST", GRADIENT, (413, 422),
            gradient("9" * 5000 + " * x", {"x": 1})),
    Hostile("exponent just over the limit, said exactly", "9b", "POST", GRADIENT, 413,
            gradient("x**(1e3+1e-9)", {"x": 1}), detail="1000.000000001", by="language"),
    Hostile("NFKC names in at", "10", "POST", GRADIENT, 200,
            gradient("θ**2 + ℏ", {"θ": 2, "ℏ": 1}), by="language"),
    Hostile("micro sign and mu are one name", "10", "POST", GRADIENT, 200,
            gradient("\u03bc * 2", {"\u00b5": 1}), by="language"),
    Hostile("interpreter loop past max_operations", "4", "POST", GRADIENT, 413,
            {"json": {"program": "def f(x):\n    for i in range(10000):\n        for j in "
                      "range(10000):\n            x += 1\n    return x\n", "function": "f",
                      "at": {"x": 1.0}}}),
    Hostile("dunder escape", "language", "POST", GRADIENT, 422,
            gradient("().__class__.__bases__[0].__subclasses__()", {})),
    Hostile("import in a program", "language", "POST", GRADIENT, 422,
            {"json": {"program": "import os\ndef f(x):\n    return x\n", "function": "f",
                      "at": {"x": 1.0}}}),
    Hostile("minimize an f-string", "language", "POST", MINIMIZE, 422,
            {"json": {"expression": "f'{x}'", "start": {"x": 1.0}}}),
    # --- JSON -----------------------------------------------------------------------------
    Hostile("true as a number", "8", "POST", GRADIENT, 422, gradient("x**2", {"x": True})),
    Hostile("a string as a number", "8", "POST", GRADIENT, 422, gradient("x**2", {"x": "0.5"})),
    Hostile("true as an integer", "8", "POST", GRADIENT, 422, gradient("x", {"x": 1}, order=True)),
    Hostile("1.5 as an integer", "8", "POST", MINIMIZE, 422,
            {"json": {"expression": "x**2", "start": {"x": 1.0}, "steps": 1.5}}),
    Hostile("2.0 is an integer", "8", "POST", MINIMIZE, 200,
            {"json": {"expression": "x**2", "start": {"x": 1.0}, "steps": 2.0}}),
    Hostile("a string as a start", "8", "POST", MINIMIZE, 422,
            {"json": {"expression": "x**2", "start": {"x": "1"}}}),
    Hostile("true as a fit point", "8", "POST", "/v1/fit/line", 422,
            {"json": {"x": [0, 1, True], "y": [0, 1, 2]}}),
    Hostile("a string as a POI value", "8", "POST", "/v1/pyhf/hypotest", 422,
            {"json": {"model": SIMPLE_MODEL, "poi_values": "1.0"}}),
    Hostile("true as a width", "8", "POST", "/v1/fractal", 422,
            {"json": {"width": True, "height": 8, "format": "json"}}),
    Hostile("1 as a boolean", "8", "POST", "/v1/fractal", 422,
            {"json": {"width": 8, "height": 8, "smooth": 1, "format": "json"}}),
    Hostile("the documented NaN string", "8", "POST", GRADIENT, 200, gradient("x", {"x": "NaN"})),
    Hostile("1e400 where finite", "JSON", "POST", MINIMIZE, 422,
            {"content": b'{"expression": "x**2", "start": {"x": 1e400}}',
             "headers": {"Content-Type": "application/json"}}),
    Hostile("60 MB to /v1/minimize", "2", "POST", MINIMIZE, 413, lambda: {
        "content": b'{"expression": "x", "start": {"x": 1.0}, "pad": "' + b"a" * 60_000_000 + b'"}',
        "headers": {"Content-Type": "application/json"}}, detail="max_minimize_body_bytes"),
    Hostile("5 MB of JSON to /v1/gradient", "2", "POST", GRADIENT, 413, lambda: {
        "content": b'{"expression": "x", "at": {"x": [' + b"1," * 2_500_000 + b'1]}}',
        "headers": {"Content-Type": "application/json"}}, detail="max_json_body_bytes"),
    Hostile("100 KB to /v1/fractal", "2", "POST", "/v1/fractal", 413,
            {"json": {"width": 8, "pad": "a" * 100_000}}, detail="max_fractal_body_bytes"),
    Hostile("nesting 100,000 deep", "JSON", "POST", GRADIENT, 422,
            {"content": b'{"expression": "x", "at": {"x": ' + b"[" * 100_000 + b"]" * 100_000
             + b"}}", "headers": {"Content-Type": "application/json"}}),
    Hostile("truncated JSON", "JSON", "POST", MINIMIZE, 422,
            {"content": b'{"expression": "x", "start": {', "headers": {"Content-Type": "application/json"}}),
    Hostile("not UTF-8", "JSON", "POST", MINIMIZE, 422,
            {"content": b'{"expression": "\xff\xfe", "start": {}}', "headers": {"Content-Type": "application/json"}}),
    Hostile("a JSON list as the body", "JSON", "POST", "/v1/pyhf/fit", 422, {"json": [1, 2, 3]}),
    Hostile("an unknown field", "JSON", "POST", MINIMIZE, 422,
            {"json": {"expression": "x**2", "start": {"x": 1.0}, "stpes": 3}}),
    Hostile("10,000 variables", "JSON", "POST", GRADIENT, (413, 422),
            gradient("x", {f"v{i}": 1.0 for i in range(10_000)})),
    Hostile("a 1 MB variable name", "JSON", "POST", GRADIENT, (413, 422), gradient("x", {"x" * 2**20: 1.0})),
    Hostile("both pyhf model kinds", "5", "POST", "/v1/pyhf/fit", 422,
            {"json": {"model": {**SIMPLE_MODEL, "workspace": {}}}}),
    Hostile("neither pyhf model kind", "5", "POST", "/v1/pyhf/fit", 422,
            {"json": {"model": {"simple": None, "workspace": None}}}),
    Hostile("an empty scan axis", "5", "POST", "/v1/pyhf/scan", 422,
            {"json": {"model": SIMPLE_MODEL, "x": {"name": "mu", "low": 1, "high": 1},
                      "y": {"name": "uncorr_bkguncrt[0]", "low": 0.5, "high": 1.5}}}),
    Hostile("expression and program", "5", "POST", GRADIENT, 422,
            {"json": {"expression": "x", "program": "def f(x):\n    return x\n", "function": "f",
                      "at": {"x": 1.0}}}),
    Hostile("options in the query beside JSON", "5", "POST", GRADIENT, 422,
            {"params": {"order": "2"}, **gradient("x", {"x": 1.0})}),
    # --- .npy / .npz ----------------------------------------------------------------------
    Hostile(".npz bomb (~1 GB inflated)", "1", "POST", GRADIENT, (413, 422), lambda: {
        "params": {"expression": "x0"}, "content": npz_bomb(64, 2_000_000), "headers": NPZ}),
    Hostile(".npz with a repeated member", "9a", "POST", GRADIENT, 422,
            {"params": {"expression": "x"}, "headers": NPZ,
             "content": npz_of([("x.npy", npy([1.0])), ("x.npy", npy([2.0]))])}),
    Hostile("random bytes as .npz", "npz", "POST", GRADIENT, 422,
            {"params": {"expression": "x"}, "content": os.urandom(4096), "headers": NPZ}),
    Hostile("a pickled object array in .npz", "npz", "POST", GRADIENT, 422,
            {"params": {"expression": "x"}, "headers": NPZ,
             "content": npz_of([("x.npy", npy(np.array([{"a": 1}], dtype=object)))])}),
    Hostile(".npz of 300 members", "npz", "POST", GRADIENT, 413,
            {"params": {"expression": "x"}, "headers": NPZ,
             "content": npz_of([(f"x{i}.npy", npy([1.0])) for i in range(300)])}),
    Hostile(".npy declaring 10^12 points", "npy", "POST", "/v1/fit/line", 413,
            {"content": npy_declaring((10**12, 2), b"\0" * 64), "headers": NPY}),
    Hostile(".npy declaring more than it holds", "npy", "POST", "/v1/fit/line", 422,
            {"content": npy_declaring((1000, 2), b"\0" * 64), "headers": NPY}),
    Hostile(".npy of strings", "npy", "POST", "/v1/fit/line", 422,
            {"content": npy(np.array([["a", "b"], ["c", "d"]])), "headers": NPY}),
    Hostile(".npy of complex numbers", "npy", "POST", "/v1/fit/line", 422,
            {"content": npy(np.ones((4, 2), complex)), "headers": NPY}),
    Hostile("an .npz sent as JSON", "npz", "POST", GRADIENT, 422,
            {"params": {"expression": "x"}, "content": npz_of([("x.npy", npy([1.0]))]),
             "headers": {"Content-Type": "application/json"}}),
    Hostile("an unknown Content-Type", "headers", "POST", GRADIENT, 415,
            {"content": b"x=1", "headers": {"Content-Type": "text/csv"}}),
    # --- query strings --------------------------------------------------------------------
    Hostile("a 16,777,216 x 1 picture", "11", "GET", "/v1/fractal/mandelbrot.png", 413,
            {"params": {"width": 16_777_216, "height": 1, "max_iter": 1}}, detail="max_aspect_ratio"),
    Hostile("a 1 x 16,777,216 picture", "11", "POST", "/v1/fractal", 413,
            {"json": {"width": 1, "height": 16_777_216, "max_iter": 1}}, detail="max_aspect_ratio"),
    Hostile("2.5 as a width", "8", "GET", "/v1/fractal/mandelbrot.png", 422,
            {"params": {"width": "2.5", "height": 8}}),
    Hostile("yes as a boolean", "8", "GET", "/v1/fractal/mandelbrot.png", 422,
            {"params": {"width": 8, "height": 8, "smooth": "yes"}}),
    Hostile("inf as a coordinate", "8", "GET", "/v1/fractal/mandelbrot.png", 422,
            {"params": {"width": 8, "height": 8, "center_x": "inf", "center_y": 0, "scale": 1}}),
    Hostile("1_000 as a width", "8", "GET", "/v1/fractal/mandelbrot.png", 422,
            {"params": {"width": "1_000", "height": 8}}),
    Hostile("true as a query number", "8", "POST", "/v1/fit/line", 422,
            {"params": {"epochs": "true"}, "content": npy(np.ones((4, 2))), "headers": NPY}),
    Hostile("NUL in a query value", "query", "GET", "/v1/fractal/mandelbrot.png", 422,
            {"params": {"colormap": "viridis\0"}}),
    Hostile("an unknown query parameter", "query", "GET", "/v1/fractal/mandelbrot.png", 422,
            {"params": {"widht": 8}}),
    Hostile("a tile past the zoom limit", "query", "GET", "/v1/fractal/tiles/99/0/0.png", 413),
    Hostile("a tile outside the world", "query", "GET", f"/v1/fractal/tiles/3/{2**70}/0.png", (404, 422)),
    Hostile("a 30 KB query string", "query", "GET", "/v1/fractal/mandelbrot.png", (400, 414, 422, 431),
            {"params": {"colormap": "v" * 30_000}}),
    # --- headers --------------------------------------------------------------------------
    Hostile("no API key", "7", "POST", MINIMIZE, 401, {"json": {}, "headers": {"X-API-Key": None}}),
    Hostile("a wrong Bearer beside a good key", "7", "GET", "/v1/info", 401,
            {"headers": {"Authorization": "Bearer wrong"}}),
    Hostile("a 500-character request id", "headers", "GET", "/v1/info", 200,
            {"headers": {"X-Request-ID": "x" * 500}}),
    Hostile("a 64 KB header", "headers", "GET", "/v1/info", (200, 400, 431),
            {"headers": {"X-Padding": "p" * 65_536}}),
    Hostile("a 1 MB header", "headers", "GET", "/v1/info", (200, 400, 431),
            {"headers": {"X-Padding": "p" * 2**20}}),
]


def _expected_failure(case: Hostile) -> Any:
    if case.by is None:
        return pytest.param(case, id=case.name)
    return pytest.param(case, id=case.name, marks=pytest.mark.xfail(
        strict=True, reason=f"finding {case.finding}: fixed by the {case.by} helper"))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """``uvicorn`` serving tests.helpers.apps:served_app (an API key, test routes) on a free port."""
    log_path = tmp_path_factory.mktemp("hostile") / "server.log"

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--factory", "tests.helpers.apps:served_app",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]

    with serving_process(command, log_path, {**os.environ, **SERVER_ENV}) as (url, process):
        yield url, process.pid


def _peak_memory(pid: int) -> int:
    """The process's peak resident memory since the last reset (bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _resident_memory(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("case", [_expected_failure(case) for case in CASES])
def test_hostile_input(server, case: Hostile):
    url, pid = server
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from what is resident
    before = _resident_memory(pid)
    request = dict(case.request() if callable(case.request) else case.request)
    headers = {**KEY, **request.pop("headers", {})}
    headers = {name: value for name, value in headers.items() if value is not None}
    with httpx.Client(base_url=url, timeout=60) as client:
        start = time.monotonic()
        response = client.request(case.method, case.path, headers=headers, **request)
        elapsed = time.monotonic() - start
    grown = _peak_memory(pid) - before
    said = f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    expected = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in expected, said
    assert response.status_code < 500, said
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
            "application/problem+json"):
        problem = response.json()
        if case.detail:
            assert case.detail in problem["detail"] + str(problem.get("limit")), said
    elif response.status_code >= 400:
        assert response.status_code in (400, 414, 431), said  # refused by the HTTP server itself
    cost = f"{said}: {elapsed:.1f} s, peak memory +{grown / 2**20:.0f} MiB"
    assert grown < MEMORY_BUDGET, cost
    if response.status_code >= 400:
        assert elapsed < SLOWEST_SECONDS, cost


def test_an_exception_leaves_the_connection_healthy(server):
    """The last-resort handler answers 500 problem+json itself: uvicorn never sees the exception,
    so it keeps the keep-alive connection, and the next request on it succeeds."""
    url, _ = server
    with httpx.Client(base_url=url, headers=KEY) as client:
        port = client.get("/v1/test/peer").json()["port"]
        crash = client.get("/v1/test/crash", headers={"X-Request-ID": "keepalive-1"})
        assert crash.status_code == 500
        assert crash.headers["content-type"].startswith("application/problem+json")
        assert crash.json()["request_id"] == crash.headers["x-request-id"] == "keepalive-1"
        assert "secret" not in crash.text
        after = client.get("/v1/test/peer")
        assert after.status_code == 200 and after.json()["port"] == port  # the same connection


def test_livez_stays_fast_while_large_bodies_arrive(server):
    """/livez keeps answering while 60 MB of JSON is sent to /v1/minimize (refused by its body
    limit before it is read: once parsed on the event loop, /livez waited ~6 s) and while the
    largest JSON body allowed (limits.max_json_body_bytes, 4 MiB) is parsed. Parsing holds the
    interpreter lock even in a worker thread: that second stall is bounded by the JSON limit
    (~0.2 s on a quiet 2-core machine), not removed."""
    url, _ = server
    head = b'{"model": ' + json.dumps(SIMPLE_MODEL).encode() + b', "poi_values": 1.0, "data": ['
    count = (4 * 2**20 - len(head) - 8) // 4  # numbers "0.5," up to the JSON body limit
    bodies = [
        (MINIMIZE, b'{"expression": "x", "start": {"x": 1.0}, "pad": [' + b"1," * 30_000_000
         + b"1]}", 1.0),
        ("/v1/pyhf/hypotest", head + b"0.5," * (count - 1) + b"0.5]}", 3.0),
    ]
    for path, body, slowest in bodies:
        answers: list[httpx.Response] = []

        def send(path: str = path, body: bytes = body, answers: list = answers) -> None:
            with httpx.Client(base_url=url, timeout=120) as client:
                answers.append(client.post(path, content=body, headers={
                    **KEY, "Content-Type": "application/json"}))

        sender = threading.Thread(target=send)
        latencies = []
        with httpx.Client(base_url=url, timeout=30) as probe:
            sender.start()
            while sender.is_alive():
                start = time.monotonic()
                assert probe.get("/livez").status_code == 200
                latencies.append(time.monotonic() - start)
                time.sleep(0.01)
        sender.join()
        assert answers and answers[0].status_code in (413, 422), answers[0].text[:300]
        assert max(latencies) < slowest, (path, max(latencies), len(latencies))
