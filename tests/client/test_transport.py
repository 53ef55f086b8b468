"""The client: retries with backoff, Retry-After, error mapping, sync/async twins, per-call
options, typed answers, a thin import, the docstrings' examples."""

from __future__ import annotations

import asyncio
import doctest
import email.utils
import importlib
import inspect
import json
import pydoc
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import labcrunch._base as base
from labcrunch import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    ServiceInfo,
    ValidationError,
)
from labcrunch._arrays import NON_FINITE, array, json_numbers, number, spell, to_npz
from labcrunch._arrays import from_npz as read_npz
from labcrunch._constants import BINARY_THRESHOLD
from labcrunch.gradient import GradientResult
from labcrunch.minimize import MinimizeResult
from labcrunch_service import __version__ as server_version

PROBLEM = {"type": "t", "title": "T", "status": 0, "detail": "what went wrong"}
# A /v1/info answer as the server writes it (the in-process tests below read the real one).
INFO = {
    "service": "labcrunch", "version": "9.9.9", "ready": True, "warmup_errors": {},
    "backends": {"jax": {"available": True, "version": "0.1", "x64": True, "default_device": "cpu",
                         "devices": ["cpu:0 cpu"]},
                 "tensorflow": {"available": None, "version": "2.0", "reason": "not loaded yet"},
                 "libraries": {"pyhf": "0.7.6", "scipy": None}},
    "compute": {"max_concurrent_jobs": 2, "max_queued_jobs": 16, "in_flight": 0},
    "auth": "none", "limits": {"max_points": 2_000_000, "max_wall_seconds": 60.0},
}


@pytest.fixture
def sleeps(monkeypatch):
    """Record backoff sleeps instead of sleeping."""
    waited: list[float] = []
    monkeypatch.setattr(base.time, "sleep", waited.append)

    async def fake_async_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(base.asyncio, "sleep", fake_async_sleep)
    return waited


def scripted(*responses):
    """A MockTransport answering with the given responses (or raising given exceptions) in order."""
    calls: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), calls


def problem(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={**PROBLEM, "status": status},
                          headers={"x-request-id": "rid-1", **headers})


def info_answer() -> httpx.Response:
    return httpx.Response(200, json=INFO)


def test_retries_429_honouring_retry_after(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "3"}), problem(503), info_answer())
    with Client("http://x", transport=transport, max_retries=2) as lc:
        assert lc.info().version == "9.9.9"
    assert len(calls) == 3
    assert sleeps[0] == 3.0                       # Retry-After wins
    assert 0.5 * 0.75 <= sleeps[1] <= 0.5 * 2     # then exponential backoff with jitter


@pytest.mark.parametrize(("header", "expected"), [
    ("2.5", 2.5), ("-4", 0.0), ("soon", None), ("", None), ("NaN", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
])
def test_retry_after_header_forms(header, expected):
    """Seconds or an HTTP date (RFC 9110); anything else is ignored, never an exception."""
    assert base._retry_after(httpx.Response(429, headers={"retry-after": header})) == expected


def test_retry_after_http_date_in_the_future():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= base._retry_after(httpx.Response(503, headers={"retry-after": when})) <= 30


def test_garbled_retry_after_still_retries(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "soon"}), info_answer())
    with Client("http://x", transport=transport, max_retries=1) as lc:
        assert lc.info().service == "labcrunch"
    assert len(calls) == 2 and 0.5 * 0.75 <= sleeps[0] <= 0.5


def test_backoff_doubles_and_is_capped():
    delays = [base._backoff(k, None) for k in range(8)]
    assert all(0.75 * min(0.5 * 2**k, 8.0) <= d <= min(0.5 * 2**k, 8.0) for k, d in enumerate(delays))


def test_gives_up_after_max_retries(sleeps):
    transport, calls = scripted(*[problem(503)] * 3)
    with Client("http://x", transport=transport, max_retries=2) as lc, pytest.raises(InternalServerError) as err:
        lc.info()
    assert len(calls) == 3 and err.value.status == 503 and err.value.request_id == "rid-1"


@pytest.mark.parametrize("slug", ["backend-unavailable", "timeout"])
def test_permanent_503s_are_not_retried(slug, sleeps):
    """A missing backend (e.g. no TensorFlow on that server) stays missing, and a job over its wall
    time would only run again for as long; other 503s (a server warming up) are retried."""
    permanent = httpx.Response(503, json={**PROBLEM, "status": 503,
                                          "type": f"https://labcrunch.dev/problems/{slug}"})
    transport, calls = scripted(permanent)
    with Client("http://x", transport=transport, max_retries=2) as lc, pytest.raises(InternalServerError):
        lc.info()
    assert len(calls) == 1 and sleeps == []


def test_negative_max_retries_means_one_try(sleeps):
    transport, calls = scripted(problem(503))
    with Client("http://x", transport=transport, max_retries=-1) as lc, pytest.raises(InternalServerError):
        lc.info()
    assert len(calls) == 1


def test_per_call_max_retries(sleeps):
    transport, calls = scripted(problem(429))
    with Client("http://x", transport=transport, max_retries=5) as lc, pytest.raises(RateLimitError):
        lc.with_options(max_retries=0).info()
    assert len(calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (401, AuthenticationError), (404, NotFoundError),
     (413, RequestTooLargeError), (422, ValidationError), (500, InternalServerError)],
)
def test_each_status_maps_to_its_exception(status, cls, sleeps):
    transport, calls = scripted(problem(status))
    with Client("http://x", transport=transport) as lc, pytest.raises(cls) as err:
        lc.info()
    assert len(calls) == 1  # not retried
    assert err.value.status == status
    assert err.value.problem["detail"] == "what went wrong"
    assert err.value.request_id == "rid-1"


def test_connection_errors_are_retried_then_raised(sleeps):
    transport, calls = scripted(*[httpx.ConnectError("refused")] * 3)
    with Client("http://x", transport=transport, max_retries=2) as lc, pytest.raises(APIConnectionError):
        lc.info()
    assert len(calls) == 3 and len(sleeps) == 2


def test_timeouts_raise_api_timeout(sleeps):
    transport, _ = scripted(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"))
    with Client("http://x", transport=transport, max_retries=1) as lc, pytest.raises(APITimeoutError):
        lc.info()


def test_api_key_and_base_url_from_environment(monkeypatch):
    monkeypatch.setenv("LABCRUNCH_URL", "http://lab-gpu:9000/")
    monkeypatch.setenv("LABCRUNCH_API_KEY", "k")
    transport, calls = scripted(info_answer())
    with Client(transport=transport) as lc:
        lc.info()
    assert str(calls[0].url) == "http://lab-gpu:9000/v1/info"
    assert calls[0].headers["authorization"] == "Bearer k"


def test_async_client_has_the_same_surface(sleeps):
    transport, calls = scripted(problem(429, **{"retry-after": "1"}), info_answer())

    async def go():
        async with AsyncClient("http://x", transport=transport) as lc:
            return await lc.info()

    assert asyncio.run(go()).version == "9.9.9"
    assert sleeps == [1.0] and len(calls) == 2
    public = {n for n in dir(Client) if not n.startswith("_")}
    assert public == {n for n in dir(AsyncClient) if not n.startswith("_")} - {"aclose"} | {"close"}


def test_async_client_against_the_app_in_process(app):
    async def go():
        async with AsyncClient("http://app", transport=httpx.ASGITransport(app=app)) as lc:
            info = await lc.info()
            with pytest.raises(NotFoundError):
                await lc._send(base.Call("GET", "/v1/not-here", base.json_answer(dict)))
            return info

    assert asyncio.run(go()).service == "labcrunch"


def test_non_finite_spellings_round_trip():
    assert number("NaN") != number("NaN")
    assert number("-Infinity") == float("-inf")
    out = array([[1, "Infinity"], ["NaN", -2.5]])
    assert out.shape == (2, 2) and out[0, 1] == float("inf") and out[1, 1] == -2.5
    spelled = json_numbers(np.array([[1.5, np.inf], [np.nan, -np.inf]]))
    assert spelled == [[1.5, "Infinity"], ["NaN", "-Infinity"]]
    assert json_numbers(np.arange(3.0)) == [0.0, 1.0, 2.0]
    assert json_numbers(np.float64(-np.inf)) == "-Infinity" and json_numbers(2.5) == 2.5
    for text, value in NON_FINITE.items():  # one table, read and written the same way
        assert spell(value) == text and (number(text) == value or np.isnan(value))
    # The server's own encoder is the oracle for the spelling.
    from labcrunch_service.encoding import jsonable

    values = [1.0, np.nan, np.inf, -np.inf]
    assert json_numbers(values) == jsonable(np.array(values))


# --- per-call options, signatures -----------------------------------------------------------

def recording(response_factory):
    """A MockTransport answering every request with ``response_factory()``; returns the requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response_factory()

    return httpx.MockTransport(handler), seen


def test_timeout_per_call_overrides_the_clients():
    transport, seen = recording(info_answer)
    with Client("http://x", transport=transport, timeout=30.0) as lc:
        lc.info()
        lc.info(timeout=2.5)
        lc.with_options(timeout=7.0).info()
    assert [r.extensions["timeout"]["read"] for r in seen] == [30.0, 2.5, 7.0]
    assert seen[1].extensions["timeout"]["connect"] == 2.5  # never longer than the call's limit


def test_max_retries_per_call_overrides_the_clients(sleeps):
    transport, calls = scripted(problem(503), problem(503), info_answer())
    with Client("http://x", transport=transport, max_retries=0) as lc:
        assert lc.info(max_retries=2).version == "9.9.9"
    assert len(calls) == 3 and len(sleeps) == 2
    transport, calls = scripted(problem(503))
    with Client("http://x", transport=transport, max_retries=5) as lc, pytest.raises(InternalServerError):
        lc.info(max_retries=0)
    assert len(calls) == 1


def test_async_per_call_options(sleeps):
    transport, calls = scripted(problem(429), info_answer())

    async def go():
        async with AsyncClient("http://x", transport=transport, max_retries=0) as lc:
            return await lc.info(max_retries=1, timeout=4.0)

    assert asyncio.run(go()).version == "9.9.9"
    assert len(calls) == 2 and calls[1].extensions["timeout"]["read"] == 4.0


@pytest.mark.timeout(30)
def test_a_real_socket_that_never_answers_times_out_at_the_calls_limit():
    """A listening socket that never accepts: the connection opens, no answer comes. The call's
    timeout (not the client's 120 s) ends it; pytest-timeout fails the test if it does not."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with Client(f"http://127.0.0.1:{port}", max_retries=3) as lc, pytest.raises(APITimeoutError):
            lc.info(timeout=0.3, max_retries=0)


def test_every_endpoint_documents_timeout_and_max_retries_and_a_result_type():
    endpoints = [name for cls in Client.__mro__ for name, value in vars(cls).items()
                 if isinstance(value, base.endpoint)]
    assert {"info", "ready", "gradient", "minimize", "minimize_optimizers", "fit_line", "pyhf_fit",
            "pyhf_scan", "pyhf_hypotest", "pyhf_upper_limit", "fractal", "fractal_counts",
            "fractal_tile"} <= set(endpoints)
    for name in endpoints:
        for client in (Client, AsyncClient):
            method = getattr(client, name)
            signature = inspect.signature(method)
            assert {"timeout", "max_retries"} <= set(signature.parameters), name
            assert signature.return_annotation not in (inspect.Signature.empty, "Any"), name
            assert not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()), name
            for section in ("Example:", "Args:", "Returns:", "timeout:", "max_retries:", ">>> "):
                assert section in method.__doc__, (name, section)
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
        assert not inspect.iscoroutinefunction(getattr(Client, name))


def test_help_shows_the_method_not_a_wrapper():
    text = pydoc.render_doc(Client.gradient, renderer=pydoc.plaintext)
    assert "gradient(self, expression" in text and "-> 'GradientResult'" in text
    assert "Returns:" in text and "timeout" in text


MISSPELLED = [  # (method, keyword arguments, the message's method and keyword)
    ("gradient", {"expression": "x**2", "at": {"x": 1.0}, "timout": 3.0}, "gradient", "timout"),
    ("info", {"max_retry": 1}, "info", "max_retry"),
    ("fractal", {"format": "npy"}, "fractal", "format"),  # counts have their own method
]


def test_a_misspelled_keyword_is_a_type_error_naming_it():
    transport, seen = recording(info_answer)
    with Client("http://x", transport=transport) as lc:
        for method, kwargs, name, keyword in MISSPELLED:
            with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected keyword argument '{keyword}'"):
                getattr(lc, method)(**kwargs)

    async def twin() -> None:
        async with AsyncClient("http://x", transport=transport) as alc:
            for method, kwargs, name, keyword in MISSPELLED:
                with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected keyword argument '{keyword}'"):
                    await getattr(alc, method)(**kwargs)

    asyncio.run(twin())
    assert seen == []  # nothing was sent


# --- typed answers --------------------------------------------------------------------------

def test_info_is_typed_and_matches_the_servers_settings(api, settings):
    with Client("http://testserver", transport=api._transport, max_retries=0) as lc:
        info = lc.info()
    assert isinstance(info, ServiceInfo)
    assert info.service == "labcrunch" and info.version == server_version and info.ready is True
    assert info.limits == settings.limits.model_dump()
    assert info.compute.max_concurrent_jobs == settings.max_concurrent_jobs
    assert info.compute.max_queued_jobs == settings.max_queued_jobs
    assert info.auth == "none"
    import jax

    jax_backend = info.backends["jax"]
    assert jax_backend.available is True and jax_backend.version == jax.__version__
    assert len(jax_backend.devices) == len(jax.devices())
    assert set(info.backends) == {"jax", "tensorflow"}  # "libraries" is its own field
    import pyhf

    assert info.libraries["pyhf"] == pyhf.__version__


def test_info_from_json_round_trip(api):
    body = api.get("/v1/info").json()
    info = ServiceInfo.from_json(json.loads(json.dumps(body)))
    assert info.limits == body["limits"] and info.warmup_errors == body["warmup_errors"]
    assert info.backends["tensorflow"].version == body["backends"]["tensorflow"]["version"]
    assert info.libraries == body["backends"]["libraries"]
    parsed = ServiceInfo.from_json(INFO)
    assert parsed.backends["tensorflow"].available is None
    assert parsed.backends["tensorflow"].reason == "not loaded yet"
    assert parsed.backends["jax"].devices == ("cpu:0 cpu",) and parsed.libraries["scipy"] is None


def test_ready_is_a_bool_and_not_ready_is_false(sleeps):
    not_ready = httpx.Response(503, json={**PROBLEM, "status": 503}, headers={"retry-after": "1"})
    transport, calls = scripted(not_ready, httpx.Response(200, json={"status": "ready"}))
    with Client("http://x", transport=transport, max_retries=5) as lc:
        assert lc.ready() is False  # asks once by default
        assert lc.ready() is True
    assert len(calls) == 2 and sleeps == []


# --- thin import, docstrings ----------------------------------------------------------------

def test_importing_the_client_loads_httpx_and_numpy_only():
    script = ("import sys, labcrunch, labcrunch.plot; "
              "print(sorted(m for m in ('matplotlib', 'jax', 'tensorflow', 'scipy', 'pyhf', "
              "'pydantic', 'fastapi', 'labcrunch_service') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


DOCUMENTED_MODULES = ["labcrunch._base", "labcrunch._client", "labcrunch.service", "labcrunch.gradient",
                      "labcrunch.minimize", "labcrunch.fit", "labcrunch.pyhf", "labcrunch.fractal"]


@pytest.mark.slow  # compiles what the examples compute (pyhf models, optimisers): seconds
@pytest.mark.parametrize("module", DOCUMENTED_MODULES)
def test_docstring_examples_run_against_the_app(api, module):
    """Every ``>>>`` example, with ``lc`` a Client over the in-process app."""
    from labcrunch.pyhf import simple_model

    found = importlib.import_module(module)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with Client("http://testserver", transport=api._transport, max_retries=0) as lc:
        globs = {"lc": lc, "simple_model": simple_model, "np": np}
        tests = finder.find(found, globs=globs)
        # Endpoint methods are descriptors: their examples are on the functions a class lookup gives.
        for cls in vars(found).values():
            if isinstance(cls, type) and cls.__module__ == module:
                for name, value in vars(cls).items():
                    if isinstance(value, base.endpoint):
                        tests += finder.find(getattr(Client, name), f"{module}.{cls.__name__}.{name}",
                                             module=found, globs=globs)
        for test in tests:
            runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0 and results.attempted > 0


# --- one threshold, one way of reading results ----------------------------------------------

def sent(method, *args, **kwargs) -> httpx.Request:
    """The request a client method sends (read off a local mock transport that refuses it)."""
    transport, seen = recording(lambda: httpx.Response(422, json={**PROBLEM, "status": 422}))
    with Client("http://x", transport=transport, max_retries=0) as lc, pytest.raises(ValidationError):
        getattr(lc, method)(*args, **kwargs)
    return seen[0]


@pytest.mark.parametrize("size", [BINARY_THRESHOLD - 1, BINARY_THRESHOLD])
def test_one_binary_threshold_for_every_domain(size):
    binary = size >= BINARY_THRESHOLD
    gradient = sent("gradient", "x", at={"x": np.zeros(size)})
    assert (gradient.headers["content-type"] == "application/x-npz") is binary
    fit = sent("fit_line", np.arange(size, dtype=float), np.arange(size, dtype=float))
    assert (fit.headers["content-type"] == "application/x-npy") is binary
    side = int(np.sqrt(size))
    scan = sent("pyhf_scan", {"simple": {}}, ("a", 0, 1, side), ("b", 0, 1, size // side))
    assert (scan.headers.get("accept") == "application/x-npz") is (side * (size // side) >= BINARY_THRESHOLD)
    for module in ("gradient", "fit", "pyhf"):  # no second copy of the constant
        assert not hasattr(importlib.import_module(f"labcrunch.{module}"), "BINARY_THRESHOLD")


def test_gradient_result_from_json_and_from_npz_agree(api):
    x = np.array([0.5, 1.0, np.inf, 0.0])
    body = {"expression": "log(x) * y", "at": {"x": json_numbers(x), "y": 2.0}, "order": 2}
    raw = api.post("/v1/gradient", json=body).json()
    parsed = GradientResult.from_json(json.loads(json.dumps(raw)))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(parsed.value, 2 * np.log(x), rtol=1e-15)
        np.testing.assert_allclose(parsed.gradient["y"], np.log(x), rtol=1e-15)
        np.testing.assert_allclose(parsed.gradient["x"], 2 / x, rtol=1e-15)
    np.testing.assert_allclose(parsed.hessian[:2, 0, 1], 1 / x[:2], rtol=1e-15)
    npz = api.post("/v1/gradient", params={k: v for k, v in body.items() if k != "at"},
                   content=to_npz({"x": x, "y": np.full(4, 2.0)}),
                   headers={"Content-Type": "application/x-npz", "Accept": "application/x-npz"})
    from_npz = GradientResult.from_npz(read_npz(npz.content), backend="jax", dtype="float64")
    assert from_npz.variables == parsed.variables and from_npz.device == parsed.device
    for field in ("value", "hessian", "gradient_matrix"):
        np.testing.assert_array_equal(getattr(from_npz, field), getattr(parsed, field))


def test_minimize_result_from_json(api):
    raw = api.post("/v1/minimize", json={"expression": "x**2", "start": {"x": 1.0},
                                         "learning_rate": [0.1, 1.5], "steps": 20,
                                         "landscape": 5}).json()
    parsed = MinimizeResult.from_json(json.loads(json.dumps(raw)), expression="x**2")
    steady, diverging = parsed.runs
    np.testing.assert_allclose(steady.history.x["x"], 0.8 ** np.arange(21), rtol=1e-13)
    np.testing.assert_allclose(diverging.history.x["x"], (-2.0) ** np.arange(21), rtol=1e-13)
    assert steady.learning_rate == 0.1 and not steady.diverged and diverging.steps_taken == 20
    np.testing.assert_allclose(parsed.landscape.value, parsed.landscape.x["x"] ** 2, rtol=1e-13)
    assert MinimizeResult.from_json(raw).expression is None


TYPED_USE = '''
from labcrunch import AsyncClient, Client

with Client() as lc:
    reveal_type(lc.gradient("x**2", at={"x": 1.0}))
    reveal_type(lc.with_options(max_retries=0).info())
    reveal_type(lc.fractal_counts(width=3, height=3))
    reveal_type(lc.minimize_optimizers())
    lc.gradient("x", timout=3.0)  # type: ignore[call-arg]
    lc.gradient("x", backend="torch")  # type: ignore[arg-type]
    lc.fractal(format="npy")  # type: ignore[call-arg]


async def main() -> None:
    async with AsyncClient() as alc:
        reveal_type(await alc.fit_line([0.0, 1.0], [1.0, 2.0]))
        pending = alc.info(timeout=1.0)
        _ = reveal_type(pending)
        pending.close()
'''


@pytest.mark.slow
def test_type_checkers_see_results_and_coroutines(tmp_path):
    """mypy --strict over the package and a user's code: results typed, the async twin's methods
    coroutines of them, a misspelled keyword or an unknown backend an error (each ``type: ignore``
    above must be used, or --strict reports it)."""
    pytest.importorskip("mypy")
    (tmp_path / "labcrunch").symlink_to(Path(sys.modules["labcrunch"].__file__).parent)
    (tmp_path / "use.py").write_text(TYPED_USE)
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-color-output",
                           "--cache-dir", str(tmp_path / "cache"), "labcrunch", "use.py"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    revealed = [line.split('Revealed type is "')[1].rstrip('"') for line in done.stdout.splitlines()
                if "Revealed type" in line]
    assert revealed == [
        "labcrunch.gradient.GradientResult",
        "labcrunch.service.ServiceInfo",
        "labcrunch.fractal.FractalCounts",
        "list[labcrunch.minimize.OptimizerInfo]",
        "labcrunch.fit.LineFitResult",
        "typing.Coroutine[Any, Any, labcrunch.service.ServiceInfo]",
    ]
