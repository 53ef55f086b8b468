"""/v1/gradient end to end: the seed's cases, a generated corpus against sympy, hostile input,
batches, Hessians, encodings and the compile cache.

Oracles: closed forms, ``jax.grad``/``jax.hessian`` of Python functions written here, and
sympy's symbolic derivatives (sympy in tests only).
"""

from __future__ import annotations

import io
import random
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from fastapi.testclient import TestClient

from labcrunch_service import cache, progress
from labcrunch_service.app import create_app
from labcrunch_service.errors import ComputeTimeout
from labcrunch_service.gradient import derivatives
from labcrunch_service.settings import Limits, Settings
from tests.conftest import assert_problem, wait_ready
from tests.helpers.seed_program import SEED_PROGRAM, seed_f

BACKENDS = ("jax", "tensorflow")
NPZ = "application/x-npz"


def post(api, **body):
    response = api.post("/v1/gradient", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- the seed's cases -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_square(api, backend):
    out = post(api, expression="(x - 1)**2", at={"x": 3.0}, backend=backend)
    assert out["variables"] == ["x"]
    assert out["value"] == 4.0 and out["gradient"] == {"x": 4.0}
    assert out["backend"] == backend and out["dtype"] == "float64"
    assert out["device"] and out["elapsed_ms"] >= 0 and "hessian" not in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_program_matches_jax_grad(api, backend):
    out = post(api, program=SEED_PROGRAM, function="f", at={"x": 3.4}, backend=backend, order=2)
    assert out["value"] == pytest.approx(float(seed_f(3.4)), rel=1e-12)
    assert out["gradient"]["x"] == pytest.approx(float(jax.grad(seed_f)(3.4)), rel=1e-12)
    assert out["hessian"][0][0] == pytest.approx(float(jax.hessian(seed_f)(3.4)), rel=1e-10)
    # a batch crosses the branch: each point takes its own path
    xs = [3.4, -1.0, 0.5, -0.3]
    out = post(api, program=SEED_PROGRAM, function="f", at={"x": xs}, backend=backend)
    np.testing.assert_allclose(out["value"], [float(seed_f(x)) for x in xs], rtol=1e-12)
    np.testing.assert_allclose(out["gradient"]["x"], [float(jax.grad(seed_f)(x)) for x in xs], rtol=1e-12)


def test_two_variable_program_hessian(api):
    program = "def f(x, y):\n    if x > y:\n        return x * y ** 2\n    return sin(x) * y\n"

    def reference(x, y):
        return x * y**2 if x > y else jnp.sin(x) * y

    for x, y in [(2.0, 1.0), (0.5, 1.5)]:
        out = post(api, program=program, function="f", at={"x": x, "y": y}, order=2)
        assert out["variables"] == ["x", "y"]
        grad = jax.grad(reference, argnums=(0, 1))(x, y)
        assert [out["gradient"]["x"], out["gradient"]["y"]] == pytest.approx([float(g) for g in grad])
        hess = np.array(jax.hessian(reference, argnums=(0, 1))(x, y), dtype=np.float64)
        np.testing.assert_allclose(out["hessian"], hess, rtol=1e-12)


# --- a generated corpus against sympy -------------------------------------------------------

X, Y, Z = sp.symbols("x y z", real=True)
LEAVES = [("x", X), ("y", Y), ("z", Z), ("x", X), ("y", Y), ("0.5", sp.Rational(1, 2)),
          ("2", sp.Integer(2)), ("pi", sp.pi)]
UNARY = {
    "sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh, "arctan": sp.atan, "arcsinh": sp.asinh,
    "exp": sp.exp, "expm1": lambda a: sp.exp(a) - 1, "erf": sp.erf, "abs": sp.Abs,
    "sigmoid": lambda a: 1 / (1 + sp.exp(-a)), "softplus": lambda a: sp.log(1 + sp.exp(a)),
    "swish": lambda a: a / (1 + sp.exp(-a)), "gelu": lambda a: a / 2 * (1 + sp.erf(a / sp.sqrt(2))),
    "sinh": sp.sinh, "cosh": sp.cosh,
}
POSITIVE = {"log": sp.log, "sqrt": sp.sqrt, "log2": lambda a: sp.log(a, 2),
            "log10": lambda a: sp.log(a, 10), "cbrt": sp.cbrt}


def generate(rng: random.Random, depth: int) -> tuple[str, sp.Expr]:
    """A random expression in our language and the same in sympy (smooth where we evaluate)."""
    if depth == 0 or (depth == 1 and rng.random() < 0.3):
        return rng.choice(LEAVES)
    kind = rng.choice(["add", "sub", "mul", "div", "pow", "unary", "unary", "unary", "unary", "positive"])
    a, sa = generate(rng, depth - 1)
    if kind == "unary":
        name = rng.choice(sorted(UNARY))
        if name in ("exp", "sinh", "cosh", "expm1"):  # keep values moderate
            return f"{name}(tanh({a}))", UNARY[name](sp.tanh(sa))
        return f"{name}({a})", UNARY[name](sa)
    if kind == "positive":
        name = rng.choice(sorted(POSITIVE))
        return f"{name}(1 + ({a})**2)", POSITIVE[name](1 + sa**2)
    if kind == "pow":
        k = rng.choice([2, 3])
        return f"({a})**{k}", sa**k
    b, sb = generate(rng, depth - 1)
    if kind == "div":
        return f"({a}) / (1.5 + ({b})**2)", sa / (sp.Rational(3, 2) + sb**2)
    op = {"add": "+", "sub": "-", "mul": "*"}[kind]
    return f"({a}) {op} ({b})", {"+": sa + sb, "-": sa - sb, "*": sa * sb}[op]


def corpus(n: int, seed: int) -> list[tuple[str, sp.Expr]]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        text, expr = generate(rng, 3)
        if len(expr.free_symbols) >= 2 and sp.count_ops(expr) >= 4:
            out.append((text, expr))
    return out


CORPUS = corpus(10, seed=20261127)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_corpus_matches_sympy(api, index, backend):
    text, expr = CORPUS[index]
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    rng = np.random.default_rng(index)
    points = {s.name: rng.uniform(-1.3, 1.3, size=6) for s in symbols}
    out = post(api, expression=text, at={k: v.tolist() for k, v in points.items()}, order=2,
               backend=backend)
    assert out["variables"] == [s.name for s in symbols], text
    args = [points[s.name] for s in symbols]
    ones = np.ones(6)

    def numeric(e):
        e = e.replace(sp.DiracDelta, lambda *a: sp.Integer(0))  # |u|'' away from u = 0
        return np.asarray(sp.lambdify(symbols, e, modules=["scipy", "numpy"])(*args), float) * ones

    np.testing.assert_allclose(out["value"], numeric(expr), rtol=1e-9, atol=1e-12, err_msg=text)
    for s in symbols:
        np.testing.assert_allclose(out["gradient"][s.name], numeric(sp.diff(expr, s)),
                                   rtol=1e-8, atol=1e-10, err_msg=f"d/d{s} {text}")
    hessian = np.array(out["hessian"])
    for i, si in enumerate(symbols):
        for j, sj in enumerate(symbols):
            np.testing.assert_allclose(hessian[:, i, j], numeric(sp.diff(expr, si, sj)),
                                       rtol=1e-7, atol=1e-9, err_msg=f"d2/d{si}d{sj} {text}")


def test_jax_and_tensorflow_agree_on_the_corpus():
    """Both backends agree on the first corpus expressions in float32 too (each against the other)."""
    for index, (text, expr) in enumerate(CORPUS[:4]):
        names = sorted(s.name for s in expr.free_symbols)
        rng = np.random.default_rng(100 + index)
        at = {n: rng.uniform(-1.3, 1.3, size=5) for n in names}
        results = [derivatives.gradient(expression=text, at=at, order=2, backend=b,
                                        dtype="float32", limits=Limits()) for b in BACKENDS]
        for field in ("value", "gradient", "hessian"):
            a, b = (getattr(r, field) for r in results)
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=f"{field} {text}")


# --- batches, Hessians, dtypes, encodings ---------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_issue_example_batch_order_2(api, backend):
    x, y = np.array([0.1, 0.2]), np.array([1.0, 2.0])
    out = post(api, expression="sin(x) * y**2", at={"x": x.tolist(), "y": y.tolist()}, order=2,
               backend=backend)
    np.testing.assert_allclose(out["value"], np.sin(x) * y**2, rtol=1e-14)
    np.testing.assert_allclose(out["gradient"]["x"], np.cos(x) * y**2, rtol=1e-14)
    np.testing.assert_allclose(out["gradient"]["y"], 2 * np.sin(x) * y, rtol=1e-14)
    expected = np.stack([np.stack([-np.sin(x) * y**2, 2 * np.cos(x) * y], -1),
                         np.stack([2 * np.cos(x) * y, 2 * np.sin(x)], -1)], -2)
    np.testing.assert_allclose(out["hessian"], expected, rtol=1e-14)


def test_scalars_broadcast_over_a_batch_and_lengths_must_agree(api):
    out = post(api, expression="a * t", at={"a": 3.0, "t": [1.0, 2.0, 4.0]})
    assert out["value"] == [3.0, 6.0, 12.0] and out["gradient"] == {"a": [1.0, 2.0, 4.0], "t": [3.0] * 3}
    body = assert_problem(api.post("/v1/gradient", json={"expression": "a * t",
                                                           "at": {"a": [1.0], "t": [1.0, 2.0]}}), 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "at", "a"), ("body", "at", "t")}


def test_constant_expression(api):
    out = post(api, expression="2 * pi + sqrt(4)", at={}, order=2)
    assert out["variables"] == [] and out["gradient"] == {} and out["hessian"] == []
    assert out["value"] == pytest.approx(2 * np.pi + 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_results_are_encoded(api, backend):
    out = post(api, expression="log(x)", at={"x": [0.0, -1.0, "Infinity", 1.0]}, backend=backend)
    assert out["value"] == ["-Infinity", "NaN", "Infinity", 0.0]
    # outside the domain (the value is NaN) the derivative is NaN too, not 1/x = -1
    assert out["gradient"]["x"] == ["Infinity", "NaN", 0.0, 1.0]
    out = post(api, expression="x / y", at={"x": "NaN", "y": 0.0})
    assert out["value"] == "NaN"


def test_float32(api):
    out = post(api, expression="exp(x) * y", at={"x": [0.5, 1.0], "y": [2.0, 3.0]}, dtype="float32")
    assert out["dtype"] == "float32"
    np.testing.assert_allclose(out["gradient"]["x"], np.exp([0.5, 1.0]) * [2.0, 3.0], rtol=1e-6)


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_npz_both_ways(api):
    x = np.linspace(-2, 2, 1001)
    y = np.linspace(0, 1, 1001)
    response = api.post("/v1/gradient", params={"expression": "x * exp(y) + x**3", "order": 2},
                        content=npz(x=x, y=y), headers={"Content-Type": NPZ, "Accept": NPZ})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPZ and "x-device" in response.headers
    with np.load(io.BytesIO(response.content), allow_pickle=False) as z:
        assert z["variables"].tolist() == ["x", "y"]
        np.testing.assert_allclose(z["value"], x * np.exp(y) + x**3, rtol=1e-14)
        np.testing.assert_allclose(z["gradient"], np.stack([np.exp(y) + 3 * x**2, x * np.exp(y)], -1),
                                   rtol=1e-14)
        assert z["hessian"].shape == (1001, 2, 2)
        np.testing.assert_allclose(z["hessian"][:, 0, 0], 6 * x, rtol=1e-14)
        assert float(z["elapsed_ms"]) >= 0 and str(z["device"])
    # JSON in, .npz out
    response = api.post("/v1/gradient", json={"expression": "x**2", "at": {"x": [1.0, 2.0]}},
                        headers={"Accept": NPZ})
    with np.load(io.BytesIO(response.content), allow_pickle=False) as z:
        np.testing.assert_allclose(z["gradient"][:, 0], [2.0, 4.0])


def test_a_large_npz_batch_through_shared_memory_both_ways(api):
    """50,000 points: the columns reach the worker in a block of shared memory and are padded to
    their compiled size (57,344) where they lie; the order-1 answer comes back in the block, the
    order-2 answer's Hessian does not fit and comes through Ray; both right."""
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-2, 2, 50_000), rng.uniform(0, 1, 50_000)
    for order in (1, 2, 1):
        response = api.post("/v1/gradient", params={"expression": "x * exp(y) + x**3", "order": order},
                            content=npz(x=x, y=y), headers={"Content-Type": NPZ, "Accept": NPZ})
        assert response.status_code == 200, response.text
        with np.load(io.BytesIO(response.content), allow_pickle=False) as z:
            np.testing.assert_allclose(z["value"], x * np.exp(y) + x**3, rtol=1e-14)
            np.testing.assert_allclose(z["gradient"], np.stack([np.exp(y) + 3 * x**2, x * np.exp(y)], -1),
                                       rtol=1e-14)
            if order == 2:
                np.testing.assert_allclose(z["hessian"][:, 0, 0], 6 * x, rtol=1e-14)
                np.testing.assert_allclose(z["hessian"][:, 0, 1], np.exp(y), rtol=1e-14)
                np.testing.assert_allclose(z["hessian"][:, 1, 1], x * np.exp(y), rtol=1e-14)


def test_npz_refusals(api):
    assert_problem(api.post("/v1/gradient", params={"expression": "x"}, content=b"not a zip",
                            headers={"Content-Type": NPZ}), 422)
    pickled = npz(x=np.array([object()], dtype=object))
    assert_problem(api.post("/v1/gradient", params={"expression": "x"}, content=pickled,
                            headers={"Content-Type": NPZ}), 422)
    body = assert_problem(api.post("/v1/gradient", params={"expression": "x + y"},
                                   content=npz(x=np.ones(3)), headers={"Content-Type": NPZ}), 422)
    assert body["errors"][0]["loc"] == ["body", "at", "y"]
    # beside an .npz body the options are query parameters, and errors say so
    body = assert_problem(api.post("/v1/gradient", params={"expression": "x +* 1"},
                                   content=npz(x=np.ones(3)), headers={"Content-Type": NPZ}), 422)
    assert body["errors"][0]["loc"] == ["query", "expression"]
    assert_problem(api.post("/v1/gradient", params={"expression": "x"}, json={"at": {"x": 1}}), 422)
    assert_problem(api.post("/v1/gradient", content=b"x", headers={"Content-Type": "text/plain"}), 415)


# --- bad requests ---------------------------------------------------------------------------

def test_missing_and_extra_variables_are_named(api):
    body = assert_problem(api.post("/v1/gradient", json={"expression": "x * y", "at": {"x": 1, "q": 2}}), 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "at", "y"), ("body", "at", "q")}
    assert "y" in body["detail"] and "q" in body["detail"]
    body = assert_problem(api.post("/v1/gradient", json={
        "program": "def f(a, b):\n    return a * b\n", "function": "f", "at": {"a": 1}}), 422)
    assert body["errors"][0]["loc"] == ["body", "at", "b"]


@pytest.mark.parametrize("body, where", [
    ({"at": {"x": 1}}, "body"),
    ({"expression": "x", "program": "def f(x):\n    return x\n", "function": "f", "at": {"x": 1}}, "body"),
    ({"program": "def f(x):\n    return x\n", "at": {"x": 1}}, "function"),
    ({"expression": "x", "function": "f", "at": {"x": 1}}, "function"),
    ({"expression": "x", "at": {"x": 1}, "order": 3}, "order"),
    ({"expression": "x", "at": {"x": 1}, "backend": "torch"}, "backend"),
    ({"expression": "x", "at": {"x": 1}, "dtype": "float16"}, "dtype"),
    ({"expression": "x", "at": {"x": [[1.0]]}}, "at"),
    ({"expression": "x", "at": {"x": "one"}}, "at"),
    ({"expression": "x", "at": {"x": 1}, "points": 3}, "points"),
])
def test_bad_requests_are_422(api, body, where):
    problem = assert_problem(api.post("/v1/gradient", json=body), 422)
    assert any(where in e["loc"] for e in problem["errors"]), problem


def test_language_errors_carry_line_and_column(api):
    program = "def f(x):\n    y = x\n    return y.__class__\n"
    body = assert_problem(api.post("/v1/gradient", json={"program": program, "function": "f",
                                                           "at": {"x": 1}}), 422)
    error = body["errors"][0]
    assert error["loc"] == ["body", "program"] and (error["line"], error["column"]) == (3, 12)
    assert "line 3, column 12" in body["detail"]


HOSTILE_EXPRESSIONS = [
    "__import__('os')", "().__class__", "open('x')", "9**9**9", "(" * 10_000 + "x" + ")" * 10_000,
    "x+" * 500_000 + "x", "lambda x: x", "[x for x in range(3)]", "{x: 1 for x in y}",
    "().__class__.__bases__[0].__subclasses__()", "getattr(x, 'y')", "eval('1')", "exec('1')",
    "globals()", "x ** 10**6", "'a' * 10**9", "f'{x}'", "np.load('/etc/passwd')", "(" * 200 + "x" + ")" * 200,
    "+".join(["x"] * 3000),
]
HOSTILE_PROGRAMS = [
    "def f(x):\n    return f(x)\n",
    "def f(x):\n    for i in range(10**12):\n        x += 1\n    return x\n",
    "def f(x):\n    for i in range(10000):\n        for j in range(10000):\n            x += 1\n    return x\n",
    "import os\ndef f(x):\n    return x\n",
    "def f(x):\n    while True:\n        pass\n",
    "def f(x):\n    g = lambda y: y\n    return x\n",
    "def f(x):\n    return [x for _ in range(9)]\n",
    "def f(x):\n    return f(x + 1) + f(x - 1)\n",
    "def f(x):\n    n = 10.0**6\n    for i in range(n):\n        x += 1\n    return x\n",
]


@pytest.mark.timeout(60)
def test_hostile_corpus_is_refused_and_the_server_survives(api):
    for text in HOSTILE_EXPRESSIONS:
        response = api.post("/v1/gradient", json={"expression": text, "at": {"x": 1.0, "y": 1.0}})
        assert response.status_code in (413, 422), (text[:60], response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/problem+json")
    for source in HOSTILE_PROGRAMS:
        response = api.post("/v1/gradient", json={"program": source, "function": "f", "at": {"x": 1.0}})
        assert response.status_code in (413, 422), (source, response.status_code, response.text[:300])
    assert api.get("/livez").status_code == 200
    assert post(api, expression="(x - 1)**2", at={"x": 3.0})["gradient"] == {"x": 4.0}


def test_limits_on_points_and_info():
    small = Settings(warmup=False, log_json=False,
                     limits=Limits(max_points=10, max_program_points=3, max_text_length=40,
                                   max_variables=3, max_result_values=60))
    with TestClient(create_app(small)) as client:
        wait_ready(client)
        body = assert_problem(client.post("/v1/gradient", json={"expression": "x", "at": {"x": [0.0] * 11}}), 413)
        assert body["limit"] == "max_points" and body["maximum"] == 10 and body["value"] == 11
        body = assert_problem(client.post("/v1/gradient", json={
            "program": "def f(x):\n    return x\n", "function": "f", "at": {"x": [0.0] * 4}}), 413)
        assert body["limit"] == "max_program_points"
        body = assert_problem(client.post("/v1/gradient", json={"expression": "x" * 41, "at": {}}), 413)
        assert body["limit"] == "max_text_length"
        body = assert_problem(client.post("/v1/gradient", params={"expression": "x"},
                                          content=npz(x=np.zeros(11)), headers={"Content-Type": NPZ}), 413)
        assert body["limit"] == "max_points"
        body = assert_problem(client.post("/v1/gradient", json={"expression": "a+b+c+d", "at": {}}), 413)
        assert body["limit"] == "max_variables" and body["value"] == 4
        at = {"a": [1.0] * 10, "b": 1.0, "c": 1.0}
        assert client.post("/v1/gradient", json={"expression": "a*b*c", "at": at}).status_code == 200
        body = assert_problem(client.post("/v1/gradient", json={"expression": "a*b*c", "at": at,
                                                                  "order": 2}), 413)
        assert body["limit"] == "max_result_values" and body["value"] == 10 * (1 + 3 + 9)
        limits = client.get("/v1/info").json()["limits"]
        assert limits["max_points"] == 10 and "max_exponent_literal" in limits


# --- the compile cache ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_a_repeated_request_does_not_trace_again(api, workers, backend):
    expression = f"cosh(x) * 3.25 + y  # {backend}".split("  #")[0]
    name = f"gradient.{backend}"
    before = workers.traces()[name]
    post(api, expression=expression, at={"x": [0.1] * 9, "y": [1.0] * 9}, backend=backend)
    assert workers.traces()[name] == before + 1
    # same normalised text, same bucket (9 and 10 points share one), other spacing
    post(api, expression="cosh( x )*3.25+y", at={"x": [0.4] * 10, "y": [2.0] * 10}, backend=backend)
    assert workers.traces()[name] == before + 1
    post(api, expression=expression, at={"x": [0.1] * 100, "y": [1.0] * 100}, backend=backend)
    assert workers.traces()[name] == before + 2  # a new bucket compiles once


def test_bucket_sizes():
    assert [cache.bucket_size(n) for n in (1, 2, 3, 5, 8, 9, 1000, 1_000_000)] == \
        [1, 2, 3, 5, 8, 10, 1024, 1_048_576]
    assert all(n <= cache.bucket_size(n) <= 1.25 * n for n in range(1, 5000))


def test_program_points_are_grouped_by_path_and_compiled_once_per_path(api, workers):
    program = SEED_PROGRAM.replace("x / 10.", "x / 10.25")  # a text no other test compiles
    xs = [3.4, 0.7, 2.0, -1.0, -0.4, -2.5]  # two paths: x > 0, and the recursive branch

    def reference(x):
        if x > 0:
            for _ in range(2):
                x += jnp.sqrt(x)
            return x / 10.25
        return reference(reference(x**2)) + 1

    before = workers.traces()["gradient.jax"]
    out = post(api, program=program, function="f", at={"x": xs})
    assert workers.traces()["gradient.jax"] == before + 2
    np.testing.assert_allclose(out["gradient"]["x"], [float(jax.grad(reference)(x)) for x in xs],
                               rtol=1e-12)
    post(api, program=program, function="f", at={"x": [x + 0.01 for x in xs]})
    assert workers.traces()["gradient.jax"] == before + 2


def test_empty_batch(api):
    out = post(api, expression="x * y", at={"x": [], "y": []}, order=2)
    assert out["value"] == [] and out["gradient"] == {"x": [], "y": []} and out["hessian"] == []
    out = post(api, program="def f(x):\n    return x\n", function="f", at={"x": []})
    assert out["value"] == [] and out["gradient"] == {"x": []}


def test_missing_tensorflow_is_503(api, workers):
    from labcrunch_service.errors import BackendUnavailable

    def unavailable():
        raise BackendUnavailable("The tensorflow backend is not available on this server; use 'jax'.")

    workers.setattr("labcrunch_service.backends", "tensorflow", unavailable)
    workers.call(derivatives.cache_clear)  # a cached tf function would not need TensorFlow again
    body = assert_problem(api.post("/v1/gradient", json={"expression": "x", "at": {"x": 1.0},
                                                           "backend": "tensorflow"}), 503)
    assert "jax" in body["detail"]
    assert post(api, expression="x", at={"x": 1.0})["gradient"] == {"x": 1.0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_conditional_expressions_differentiate_only_the_side_taken(api, backend):
    """`a if c else b` in an expression: the gradient is jax.grad of the Python expression at
    each point -- the side not taken cannot leak NaN (as it would through where)."""
    text = "(log(x) if x > 0 else -x * y) if y > 1 else sqrt(x) * y"

    def reference(x, y):
        return (jnp.log(x) if x > 0 else -x * y) if y > 1 else jnp.sqrt(x) * y

    xs, ys = [-1.0, 0.0, 4.0, 2.0, 0.5], [2.0, 3.0, 2.0, 0.5, 1.0]
    out = post(api, expression=text, at={"x": xs, "y": ys}, order=2, backend=backend)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        grad = jax.grad(reference, argnums=(0, 1))(x, y)
        assert [out["gradient"]["x"][i], out["gradient"]["y"][i]] == pytest.approx(
            [float(g) for g in grad], rel=1e-12), (x, y)
        hess = np.array(jax.hessian(reference, argnums=(0, 1))(x, y), dtype=float)
        np.testing.assert_allclose(out["hessian"][i], hess, rtol=1e-12, err_msg=f"{x}, {y}")
    one = post(api, expression="sqrt(x) if x > 0 else 0", at={"x": -1.0}, backend=backend)
    assert one["gradient"]["x"] == 0.0


@pytest.mark.timeout(60)
def test_a_formula_is_parsed_once_though_every_request_brings_its_own_limits(api, workers):
    """The limits reach the worker as a new copy with each task: the checked formula is found
    by their values (a key on the object's identity never hit)."""
    expression = "x * 0.123456 + y**3"
    misses = sum(workers.read("labcrunch_service.gradient.derivatives", "_formulas.misses"))
    for _ in range(4):
        out = post(api, expression=expression, at={"x": 2.0, "y": 3.0})
        assert out["gradient"] == {"x": 0.123456, "y": 27.0}
    assert sum(workers.read("labcrunch_service.gradient.derivatives", "_formulas.misses")) == misses + 1


def test_long_formulas_run_eagerly_instead_of_compiling(api, workers):
    """XLA compiles a 100-trip loop's Hessian in seconds, 400 trips in minutes (and a compile
    cannot be stopped at the wall time): paths over MAX_COMPILED_OPERATIONS are not compiled,
    and still give jax.hessian of the Python function (large batches chunk by chunk)."""
    workers.setattr("labcrunch_service.gradient.derivatives", "EAGER_CHUNK", 2)
    program = "def f(x, y):\n    for i in range(100):\n        x = sin(x) * 1.0001 + y / 128\n    return x\n"

    def reference(x, y):
        for _ in range(100):
            x = jnp.sin(x) * 1.0001 + y / 128
        return x

    before = workers.traces()["gradient.jax"]
    out = post(api, program=program, function="f", at={"x": [0.5, -0.25], "y": [0.1, 0.3]}, order=2)
    expression = " + ".join(f"sin(x * {k}) * y" for k in range(1, 41))  # 40 terms, ~330 nodes
    xs, ys = np.array([0.3, 1.1, -0.7, 2.5, 0.0]), np.array([2.0, -1.0, 0.5, 1.5, -3.0])  # 3 chunks
    out_expression = post(api, expression=expression, at={"x": xs.tolist(), "y": ys.tolist()}, order=2)
    assert workers.traces()["gradient.jax"] == before
    for i, (x, y) in enumerate([(0.5, 0.1), (-0.25, 0.3)]):
        grad = jax.grad(reference, argnums=(0, 1))(x, y)
        assert [out["gradient"]["x"][i], out["gradient"]["y"][i]] == pytest.approx([float(g) for g in grad],
                                                                                   rel=1e-12)
        hess = np.array(jax.hessian(reference, argnums=(0, 1))(x, y), dtype=float)
        np.testing.assert_allclose(out["hessian"][i], hess, rtol=1e-10)
    k = np.arange(1, 41)[:, None]
    np.testing.assert_allclose(out_expression["gradient"]["x"], (k * np.cos(k * xs) * ys).sum(0), rtol=1e-12)
    np.testing.assert_allclose(np.array(out_expression["hessian"])[:, 0, 0],
                               -(k**2 * np.sin(k * xs) * ys).sum(0), rtol=1e-12)
    np.testing.assert_allclose(np.array(out_expression["hessian"])[:, 0, 1], (k * np.cos(k * xs)).sum(0),
                               rtol=1e-12)


# --- the language at the HTTP edge ----------------------------------------------------------

def test_a_huge_literal_is_a_422_and_the_server_answers_the_next_request(api):
    """A 5,000-digit hex literal once hit Python's int-to-str limit in ast.unparse (a 500)."""
    for literal in ("0x" + "f" * 5000, "1" * 5000, "1e999", "0b" + "1" * 3000):
        body = assert_problem(api.post("/v1/gradient", json={"expression": literal, "at": {"x": 1}}), 422)
        assert body["errors"][0]["loc"] == ["body", "expression"] and body["errors"][0]["line"] == 1
        assert "float64" in body["detail"]
    assert post(api, expression="(x - 1)**2", at={"x": 3.0})["value"] == 4.0


@pytest.mark.parametrize("text, column", [("x^2", 1), ("2x + y", 1), ("x + lgo(y)", 5)])
def test_language_refusals_keep_loc_line_and_column(api, text, column):
    body = assert_problem(api.post("/v1/gradient", json={"expression": text, "at": {"x": 1, "y": 1}}), 422)
    error = body["errors"][0]
    assert error["loc"] == ["body", "expression"] and (error["line"], error["column"]) == (1, column)
    assert error["msg"] in body["detail"]


def test_unicode_names_in_at_are_read_as_python_reads_the_expression(api):
    """Python reads ℏ as ħ and µ (micro sign) as μ (NFKC); the keys of `at` are read the same."""
    out = post(api, expression="θ**2 + ℏ", at={"θ": 2, "ℏ": 1})
    assert out["variables"] == ["ħ", "θ"] and out["value"] == 5.0
    assert post(api, expression="μ * 2", at={"µ": 3.0})["gradient"] == {"μ": 2.0}
    body = assert_problem(api.post("/v1/gradient", json={"expression": "ℏ", "at": {"ℏ": 1, "ħ": 2}}), 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "at", "ℏ"), ("body", "at", "ħ")}
    assert "ℏ" in body["detail"] and "ħ" in body["detail"]


def test_the_answer_lists_the_constants_used(api):
    """`e` is Euler's number: an expression that means the elementary charge is told so."""
    out = post(api, expression="e*V/(kb*T)", at={"V": 1.0, "kb": 1.0, "T": 1.0})
    assert out["constants"] == {"e": pytest.approx(2.718281828459045)} and out["value"] == pytest.approx(2.718281828459045)
    assert post(api, expression="np.pi * x + inf", at={"x": 1.0})["constants"] == {"inf": "Infinity", "pi": pytest.approx(3.141592653589793)}
    assert post(api, expression="x**2", at={"x": 1.0})["constants"] == {}


def test_tensorflow_runs_large_formulas_eagerly_and_stops_at_the_deadline(api, monkeypatch):
    """Like JAX, TensorFlow does not trace and optimise a graph for a formula over
    MAX_COMPILED_OPERATIONS (that cannot be stopped at the wall time): it evaluates it eagerly,
    in chunks, and the interpreter checks the deadline as it goes."""
    monkeypatch.setattr(derivatives, "EAGER_CHUNK", 2)
    expression = " + ".join(f"sin(x * {k}) * y" for k in range(1, 41))  # ~330 nodes: over 200
    xs, ys = np.array([0.3, 1.1, -0.7, 2.5, 0.0]), np.array([2.0, -1.0, 0.5, 1.5, -3.0])
    before = cache.TRACES["gradient.tensorflow"]
    out = post(api, expression=expression, at={"x": xs.tolist(), "y": ys.tolist()}, order=2,
               backend="tensorflow")
    assert cache.TRACES["gradient.tensorflow"] == before
    k = np.arange(1, 41)[:, None]
    np.testing.assert_allclose(out["gradient"]["x"], (k * np.cos(k * xs) * ys).sum(0), rtol=1e-12)
    np.testing.assert_allclose(np.array(out["hessian"])[:, 0, 0], -(k**2 * np.sin(k * xs) * ys).sum(0),
                               rtol=1e-12)
    with progress.tracking(progress.Tracker(deadline=time.monotonic() - 1.0)):
        with pytest.raises(ComputeTimeout):
            derivatives.gradient(expression=expression, at={"x": xs, "y": ys}, order=2,
                                 backend="tensorflow", limits=Limits())
